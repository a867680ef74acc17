// bpf_obj_new / bpf_obj_drop / bpf_refcount_acquire on program-BTF types. clang 14 drops
// btf_type_tag, so `__kptr` stashing is checked only for the refusal of an untagged field.
#include "graph_common.h"

char _license[] SEC("license") = "GPL";

struct node_data { long key; long data; };
struct node_rc { long key; struct bpf_refcount ref; };
struct stash_val { struct node_data __kptr *node; long pad; };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, int);
	__type(value, struct stash_val);
} stash SEC(".maps");


SEC("tc")
int new_drop(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data);
	long v;

	if (!n)
		return 1;
	n->key = 5;
	n->data = n->key + 2;
	v = n->key + n->data + 30;
	bpf_obj_drop(n);
	return v;
}

SEC("tc")
int new_leak(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data);

	if (!n)
		return 1;
	n->key = 5;
	return 0;
}

SEC("tc")
int new_no_null_check(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data);

	n->key = 5;
	bpf_obj_drop(n);
	return 0;
}

SEC("tc")
int use_after_drop(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data);

	if (!n)
		return 1;
	bpf_obj_drop(n);
	return n->key;
}

SEC("tc")
int drop_map_value(struct __sk_buff *skb)
{
	int k = 0;
	struct stash_val *v = bpf_map_lookup_elem(&stash, &k);

	if (!v)
		return 1;
	bpf_obj_drop(v);
	return 0;
}

SEC("tc")
int read_past_end(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data);
	long r;

	if (!n)
		return 1;
	r = *(long *)((void *)n + 16);
	bpf_obj_drop(n);
	return r;
}

SEC("tc")
int new_int_type(struct __sk_buff *skb)
{
	long *n = bpf_obj_new_impl(bpf_core_type_id_local(long), NULL);

	if (!n)
		return 1;
	bpf_obj_drop(n);
	return 0;
}

SEC("tc")
int new_var_type(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new_impl(skb->len, NULL);

	if (!n)
		return 1;
	bpf_obj_drop(n);
	return 0;
}

SEC("tc")
int refcount_ok(struct __sk_buff *skb)
{
	struct node_rc *n = bpf_obj_new(struct node_rc), *m;
	long v;

	if (!n)
		return 1;
	n->key = 40;
	m = bpf_refcount_acquire(n);
	bpf_obj_drop(n);
	if (!m)
		return 2;
	v = m->key + 2;
	bpf_obj_drop(m);
	return v;
}

SEC("tc")
int refcount_no_field(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data), *m;

	if (!n)
		return 1;
	m = bpf_refcount_acquire(n);
	bpf_obj_drop(n);
	if (m)
		bpf_obj_drop(m);
	return 0;
}

SEC("tc")
int refcount_field_write(struct __sk_buff *skb)
{
	struct node_rc *n = bpf_obj_new(struct node_rc);

	if (!n)
		return 1;
	*(int *)&n->ref = 7;
	bpf_obj_drop(n);
	return 0;
}

SEC("tc")
int stash_take(struct __sk_buff *skb)
{
	int k = 0;
	struct stash_val *v = bpf_map_lookup_elem(&stash, &k);
	struct node_data *n;
	long r;

	if (!v)
		return 1;
	n = bpf_kptr_xchg(&v->node, NULL);
	if (!n)
		return 3;
	r = n->key;
	bpf_obj_drop(n);
	return r;
}

/* bpf_obj_new of a union: only structs */
SEC("tc")
int new_union(struct __sk_buff *skb)
{
	bpf_obj_new(union { int a; unsigned int b; });
	return 0;
}
