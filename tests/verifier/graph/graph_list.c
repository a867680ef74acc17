// bpf_list_head in a map value (with its bpf_spin_lock) holding bpf_obj_new nodes:
// push / pop / front / back, the lock rule, owning -> non-owning references.
#include "graph_common.h"

char _license[] SEC("license") = "GPL";

struct node_data { long key; struct bpf_list_node node; long data; };
struct map_val {
	struct bpf_spin_lock lock;
	long count;
	struct bpf_list_head head __contains(node_data, node);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, int);
	__type(value, struct map_val);
} lists SEC(".maps");

#define node_of(p) container_of(p, struct node_data, node)

static __always_inline struct map_val *val(int k)
{
	return bpf_map_lookup_elem(&lists, &k);
}

SEC("tc")
int push_pop(struct __sk_buff *skb)
{
	struct map_val *v = val(1);
	struct node_data *n, *m;
	struct bpf_list_node *l;
	long r;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	m = bpf_obj_new(struct node_data);
	if (!m) {
		bpf_obj_drop(n);
		return 3;
	}
	n->key = 7;
	m->key = 9;
	bpf_spin_lock(&v->lock);
	bpf_list_push_back(&v->head, &n->node);
	bpf_list_push_front(&v->head, &m->node);
	l = bpf_list_pop_back(&v->head);
	bpf_spin_unlock(&v->lock);
	if (!l)
		return 4;
	r = node_of(l)->key;
	bpf_obj_drop(node_of(l));
	bpf_spin_lock(&v->lock);
	l = bpf_list_pop_front(&v->head);
	bpf_spin_unlock(&v->lock);
	if (!l)
		return 5;
	r = r * 10 + node_of(l)->key;
	bpf_obj_drop(node_of(l));
	return r;
}

/* add one node with key = skb->len to list 0 */
SEC("tc")
int add(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	n->key = skb->len;
	bpf_spin_lock(&v->lock);
	bpf_list_push_back(&v->head, &n->node);
	v->count++;
	n->data = v->count;  /* non-owning reference, valid while the lock is held */
	bpf_spin_unlock(&v->lock);
	return 0;
}

/* front and back without removing: key(front) * 1000 + key(back) */
SEC("tc")
int peek(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct bpf_list_node *f, *b;
	long r = 0;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	f = bpf_list_front(&v->head);
	if (f)
		r = node_of(f)->key * 1000;
	b = bpf_list_back(&v->head);
	if (b)
		r += node_of(b)->key;
	bpf_spin_unlock(&v->lock);
	return r;
}

/* pop one node from the front of list 0: its key, or -1 when empty */
SEC("tc")
int take(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct bpf_list_node *l;
	long r;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	l = bpf_list_pop_front(&v->head);
	if (l)
		v->count--;
	bpf_spin_unlock(&v->lock);
	if (!l)
		return -1;
	r = node_of(l)->key;
	bpf_obj_drop(node_of(l));
	return r;
}

SEC("tc")
int push_no_lock(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_list_push_back(&v->head, &n->node);
	return 0;
}

SEC("tc")
int pop_no_lock(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct bpf_list_node *l;

	if (!v)
		return 1;
	l = bpf_list_pop_front(&v->head);
	if (l)
		bpf_obj_drop(node_of(l));
	return 0;
}

SEC("tc")
int use_after_unlock(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_spin_lock(&v->lock);
	bpf_list_push_back(&v->head, &n->node);
	bpf_spin_unlock(&v->lock);
	n->key = 3;
	return 0;
}

SEC("tc")
int push_twice(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_spin_lock(&v->lock);
	bpf_list_push_back(&v->head, &n->node);
	bpf_list_push_back(&v->head, &n->node);
	bpf_spin_unlock(&v->lock);
	return 0;
}

SEC("tc")
int pop_leak(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct bpf_list_node *l;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	l = bpf_list_pop_front(&v->head);
	bpf_spin_unlock(&v->lock);
	return l != 0;
}

SEC("tc")
int front_drop(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct bpf_list_node *f;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	f = bpf_list_front(&v->head);
	bpf_spin_unlock(&v->lock);
	if (f)
		bpf_obj_drop(node_of(f));
	return 0;
}

SEC("tc")
int head_direct(struct __sk_buff *skb)
{
	struct map_val *v = val(0);

	if (!v)
		return 1;
	return *(long *)&v->head;
}

SEC("tc")
int node_direct(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data);
	long r;

	if (!n)
		return 1;
	r = *(long *)&n->node;
	bpf_obj_drop(n);
	return r;
}

SEC("tc")
int wrong_node_off(struct __sk_buff *skb)
{
	struct map_val *v = val(0);
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_spin_lock(&v->lock);
	bpf_list_push_back(&v->head, (void *)&n->data);
	bpf_spin_unlock(&v->lock);
	return 0;
}

SEC("tc")
int push_map_value(struct __sk_buff *skb)
{
	struct map_val *v = val(0);

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	bpf_list_push_back(&v->head, (void *)&v->count);
	bpf_spin_unlock(&v->lock);
	return 0;
}
