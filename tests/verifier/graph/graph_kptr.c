// Local kptrs (a map field holding a bpf_obj_new object, exchanged with bpf_kptr_xchg) and
// per-CPU objects (bpf_percpu_obj_new, a __percpu_kptr field, bpf_this_cpu_ptr and
// bpf_per_cpu_ptr of it). Type tags need clang 15 or later (see the Makefile).
#include "graph_common.h"
char _license[] SEC("license") = "GPL";
#define __percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))

struct val_t { long b, c, d; };
struct node_data { long key; long data; };
struct elem {
	struct val_t __percpu_kptr *pc;
	struct node_data __kptr *node;
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, int);
	__type(value, struct elem);
} stash SEC(".maps");

#define bpf_percpu_obj_new(type) ((type __percpu_kptr *)bpf_percpu_obj_new_impl(bpf_core_type_id_local(type), NULL))
#define bpf_percpu_obj_drop(kptr) bpf_percpu_obj_drop_impl(kptr, NULL)

SEC("tc")
int stash_node(struct __sk_buff *skb)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct node_data *n, *old;
	if (!e)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	n->key = skb->len;
	old = bpf_kptr_xchg(&e->node, n);
	if (old) {
		long r = old->key;
		bpf_obj_drop(old);
		return r;
	}
	return 0;
}

SEC("tc")
int unstash_node(struct __sk_buff *skb)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct node_data *old;
	long r;
	if (!e)
		return 1;
	old = bpf_kptr_xchg(&e->node, NULL);
	if (!old)
		return -1;
	r = old->key;
	bpf_obj_drop(old);
	return r;
}

SEC("tc")
int stash_leak(struct __sk_buff *skb)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct node_data *old;
	if (!e)
		return 1;
	old = bpf_kptr_xchg(&e->node, NULL);
	if (!old)
		return -1;
	return old->key;
}

SEC("tc")
int pcpu_new(struct __sk_buff *skb)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct val_t __percpu_kptr *p;
	if (!e)
		return 1;
	p = bpf_percpu_obj_new(struct val_t);
	if (!p)
		return 2;
	p = bpf_kptr_xchg(&e->pc, p);
	if (p)
		bpf_percpu_obj_drop(p);
	return 0;
}

SEC("tc")
int pcpu_use(struct __sk_buff *skb)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct val_t __percpu_kptr *p;
	struct val_t *v;
	if (!e)
		return 1;
	p = e->pc;
	if (!p)
		return 2;
	v = bpf_this_cpu_ptr(p);
	v->b += skb->len;
	v = bpf_per_cpu_ptr(p, 0);
	if (!v)
		return 3;
	return v->b;
}

/* the kernel may hand out a recycled per-CPU object without zeroing it: clear every copy */
SEC("tc")
int pcpu_zero(struct __sk_buff *skb)
{
	int k = 0, cpu;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct val_t __percpu_kptr *p;
	struct val_t *v;

	if (!e)
		return 1;
	p = e->pc;
	if (!p)
		return 2;
	for (cpu = 0; cpu < 64; cpu++) {
		v = bpf_per_cpu_ptr(p, cpu);
		if (!v)
			break;
		v->b = 0;
	}
	return cpu;
}

SEC("tc")
int pcpu_direct(struct __sk_buff *skb)
{
	struct val_t __percpu_kptr *p = bpf_percpu_obj_new(struct val_t);
	if (!p)
		return 2;
	p->b = 1;
	bpf_percpu_obj_drop(p);
	return 0;
}

SEC("tc")
int pcpu_leak(struct __sk_buff *skb)
{
	struct val_t __percpu_kptr *p = bpf_percpu_obj_new(struct val_t);
	if (!p)
		return 2;
	return 0;
}

struct other { long a; };

/* a local kptr inside an allocated object; a stashed node type (loads are non-owning) */
struct holder { long key; struct node_data __kptr *inner; };
struct rb_elem { long key; struct bpf_rb_node rb; };
struct rb_stash { struct rb_elem __kptr *node; };
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct rb_stash);
} rb_stash SEC(".maps");

SEC("tc")
int nested_kptr(struct __sk_buff *skb)
{
	struct holder *h = bpf_obj_new(struct holder);
	struct node_data *n, *old;
	long r;

	if (!h)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n) {
		bpf_obj_drop(h);
		return 2;
	}
	n->key = skb->len;
	old = bpf_kptr_xchg(&h->inner, n);
	if (old)
		bpf_obj_drop(old);
	old = bpf_kptr_xchg(&h->inner, NULL);
	r = old ? old->key : -1;
	if (old)
		bpf_obj_drop(old);
	bpf_obj_drop(h);
	return r;
}

SEC("tc")
int nested_kptr_kept(struct __sk_buff *skb)
{
	struct holder *h = bpf_obj_new(struct holder);
	struct node_data *n, *old;

	if (!h)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n) {
		bpf_obj_drop(h);
		return 2;
	}
	old = bpf_kptr_xchg(&h->inner, n);
	if (old)
		bpf_obj_drop(old);
	bpf_obj_drop(h); /* frees the node it holds */
	return 0;
}

SEC("tc")
int rb_stash_put(struct __sk_buff *skb)
{
	int k = 0;
	struct rb_stash *s = bpf_map_lookup_elem(&rb_stash, &k);
	struct rb_elem *e;

	if (!s)
		return 1;
	e = bpf_obj_new(struct rb_elem);
	if (!e)
		return 2;
	e->key = skb->len;
	e = bpf_kptr_xchg(&s->node, e);
	if (e)
		bpf_obj_drop(e);
	return 0;
}

SEC("tc")
int rb_stash_peek(struct __sk_buff *skb)
{
	int k = 0;
	struct rb_stash *s = bpf_map_lookup_elem(&rb_stash, &k);
	struct rb_elem *e;

	if (!s)
		return 1;
	e = s->node;
	return e ? e->key : -1;
}

SEC("tc")
int rb_stash_drop_peeked(struct __sk_buff *skb)
{
	int k = 0;
	struct rb_stash *s = bpf_map_lookup_elem(&rb_stash, &k);
	struct rb_elem *e;

	if (!s)
		return 1;
	e = s->node;
	if (e)
		bpf_obj_drop(e);
	return 0;
}
struct with_lock { struct bpf_spin_lock lock; long a; };
struct with_ptr { long a; long *p; };
struct big { long a[65]; };

SEC("tc")
int stash_wrong_type(struct __sk_buff *skb)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct other *o;
	if (!e)
		return 1;
	o = bpf_obj_new(struct other);
	if (!o)
		return 2;
	o = bpf_kptr_xchg(&e->node, o);
	if (o)
		bpf_obj_drop(o);
	return 0;
}

SEC("tc")
int stash_store(struct __sk_buff *skb)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct node_data *n;
	if (!e)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	e->node = n;
	return 0;
}

SEC("tc")
int stash_read(struct __sk_buff *skb)
{
	int k = 0;
	struct elem *e = bpf_map_lookup_elem(&stash, &k);
	struct node_data *n;
	if (!e)
		return 1;
	n = e->node;
	if (!n)
		return -1;
	return n->key;
}

SEC("tc")
int pcpu_with_lock(struct __sk_buff *skb)
{
	struct with_lock __percpu_kptr *p = bpf_percpu_obj_new(struct with_lock);
	if (p)
		bpf_percpu_obj_drop(p);
	return 0;
}

SEC("tc")
int pcpu_with_ptr(struct __sk_buff *skb)
{
	struct with_ptr __percpu_kptr *p = bpf_percpu_obj_new(struct with_ptr);
	if (p)
		bpf_percpu_obj_drop(p);
	return 0;
}

SEC("tc")
int pcpu_too_big(struct __sk_buff *skb)
{
	struct big __percpu_kptr *p = bpf_percpu_obj_new(struct big);
	if (p)
		bpf_percpu_obj_drop(p);
	return 0;
}

SEC("tc")
int pcpu_drop_plain(struct __sk_buff *skb)
{
	struct val_t *p = bpf_obj_new(struct val_t);
	if (p)
		bpf_percpu_obj_drop(p);
	return 0;
}

SEC("tc")
int pcpu_obj_drop(struct __sk_buff *skb)
{
	struct val_t __percpu_kptr *p = bpf_percpu_obj_new(struct val_t);
	if (p)
		bpf_obj_drop(p);
	return 0;
}

SEC("tc")
int pcpu_this_owned(struct __sk_buff *skb)
{
	struct val_t __percpu_kptr *p = bpf_percpu_obj_new(struct val_t);
	struct val_t *v;
	if (!p)
		return 2;
	v = bpf_this_cpu_ptr(p);
	v->b = 1;
	bpf_percpu_obj_drop(p);
	return 0;
}
