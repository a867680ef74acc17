// bpf_rb_root in a map value holding bpf_obj_new nodes: bpf_rbtree_add_impl with its
// `less` callback, bpf_rbtree_first, bpf_rbtree_remove, and the refusals.
#include "graph_common.h"

char _license[] SEC("license") = "GPL";

struct node_data { long key; struct bpf_rb_node node; long data; };
struct map_val {
	struct bpf_spin_lock lock;
	long count;
	struct bpf_rb_root root __contains(node_data, node);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct map_val);
} trees SEC(".maps");

#define node_of(p) container_of(p, struct node_data, node)

static _Bool less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	return node_of(a)->key < node_of(b)->key;
}

static __always_inline struct map_val *val(void)
{
	int k = 0;

	return bpf_map_lookup_elem(&trees, &k);
}

/* add a node with key = skb->len */
SEC("tc")
int add(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	n->key = skb->len;
	bpf_spin_lock(&v->lock);
	bpf_rbtree_add(&v->root, &n->node, less);
	v->count++;
	bpf_spin_unlock(&v->lock);
	return 0;
}

/* remove the smallest node: its key, or -1 */
SEC("tc")
int take_first(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *f;
	long r;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	f = bpf_rbtree_first(&v->root);
	if (!f) {
		bpf_spin_unlock(&v->lock);
		return -1;
	}
	f = bpf_rbtree_remove(&v->root, f);
	v->count--;
	bpf_spin_unlock(&v->lock);
	if (!f)
		return -2;
	r = node_of(f)->key;
	bpf_obj_drop(node_of(f));
	return r;
}

/* the smallest key without removing it */
SEC("tc")
int peek_first(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *f;
	long r = -1;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	f = bpf_rbtree_first(&v->root);
	if (f)
		r = node_of(f)->key;
	bpf_spin_unlock(&v->lock);
	return r;
}

SEC("tc")
int add_no_lock(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_rbtree_add(&v->root, &n->node, less);
	return 0;
}

SEC("tc")
int remove_owning(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct node_data *n;
	struct bpf_rb_node *r;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_spin_lock(&v->lock);
	r = bpf_rbtree_remove(&v->root, &n->node);
	bpf_spin_unlock(&v->lock);
	if (r)
		bpf_obj_drop(node_of(r));
	bpf_obj_drop(n);
	return 0;
}

SEC("tc")
int first_after_unlock(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *f;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	f = bpf_rbtree_first(&v->root);
	bpf_spin_unlock(&v->lock);
	if (!f)
		return 0;
	return node_of(f)->key;
}

SEC("tc")
int remove_leak(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *f;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	f = bpf_rbtree_first(&v->root);
	if (f)
		f = bpf_rbtree_remove(&v->root, f);
	bpf_spin_unlock(&v->lock);
	return f != 0;
}

static _Bool bad_less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	return node_of(a)->key - node_of(b)->key;
}

SEC("tc")
int add_bad_cb(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_spin_lock(&v->lock);
	bpf_rbtree_add(&v->root, &n->node, bad_less);
	bpf_spin_unlock(&v->lock);
	return 0;
}

static _Bool less_locking(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	struct map_val *v = val();

	if (v) {
		bpf_spin_lock(&v->lock);
		bpf_spin_unlock(&v->lock);
	}
	return node_of(a)->key < node_of(b)->key;
}

/* no lock may be taken in the less callback */
SEC("tc")
int lock_in_less(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_spin_lock(&v->lock);
	bpf_rbtree_add(&v->root, &n->node, less_locking);
	bpf_spin_unlock(&v->lock);
	return 0;
}
