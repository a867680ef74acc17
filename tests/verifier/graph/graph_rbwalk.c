// bpf_rbtree_root / bpf_rbtree_left / bpf_rbtree_right: walking the tree itself, whose
// shape is the kernel's (lib/rbtree.c) after any sequence of additions and removals.
#include "graph_common.h"

char _license[] SEC("license") = "GPL";

extern struct bpf_rb_node *bpf_rbtree_root(struct bpf_rb_root *root) __ksym;
extern struct bpf_rb_node *bpf_rbtree_left(struct bpf_rb_root *root, struct bpf_rb_node *node) __ksym;
extern struct bpf_rb_node *bpf_rbtree_right(struct bpf_rb_root *root, struct bpf_rb_node *node) __ksym;

struct node_data { long key; struct bpf_rb_node node; };
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

/* skb->len = 64 + 256 * depth + path: follow `depth` steps from the root, bit i of path
 * choosing right (1) or left (0) at step i; the key of the node reached, or -1 */
SEC("tc")
int walk(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *n;
	__u32 arg = skb->len - 64, depth = arg >> 8, i;
	long key = -1;

	if (!v)
		return -2;
	bpf_spin_lock(&v->lock);
	n = bpf_rbtree_root(&v->root);
	for (i = 0; i < 10 && n; i++) {
		if (i == depth)
			break;
		n = (arg >> i) & 1 ? bpf_rbtree_right(&v->root, n) : bpf_rbtree_left(&v->root, n);
	}
	if (n)
		key = node_of(n)->key;
	bpf_spin_unlock(&v->lock);
	return key;
}

/* remove the root node: its key, or -1 */
SEC("tc")
int remove_root(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *n;
	long key;

	if (!v)
		return -2;
	bpf_spin_lock(&v->lock);
	n = bpf_rbtree_root(&v->root);
	if (!n) {
		bpf_spin_unlock(&v->lock);
		return -1;
	}
	n = bpf_rbtree_remove(&v->root, n);
	if (n)
		v->count--;
	bpf_spin_unlock(&v->lock);
	if (!n)
		return -3;
	key = node_of(n)->key;
	bpf_obj_drop(node_of(n));
	return key;
}

/* remove the root's left child (or the root when it has none): its key, or -1 */
SEC("tc")
int remove_left(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *n, *l;
	long key;

	if (!v)
		return -2;
	bpf_spin_lock(&v->lock);
	n = bpf_rbtree_root(&v->root);
	if (!n) {
		bpf_spin_unlock(&v->lock);
		return -1;
	}
	l = bpf_rbtree_left(&v->root, n);
	n = bpf_rbtree_remove(&v->root, l ? l : n);
	if (n)
		v->count--;
	bpf_spin_unlock(&v->lock);
	if (!n)
		return -3;
	key = node_of(n)->key;
	bpf_obj_drop(node_of(n));
	return key;
}

/* refusals: no lock; an owning node; a walk inside the less callback */
SEC("tc")
int root_no_lock(struct __sk_buff *skb)
{
	struct map_val *v = val();

	if (!v)
		return 1;
	return bpf_rbtree_root(&v->root) ? 1 : 0;
}

SEC("tc")
int left_of_owned(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct node_data *n;
	struct bpf_rb_node *l;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_spin_lock(&v->lock);
	l = bpf_rbtree_left(&v->root, &n->node);
	bpf_spin_unlock(&v->lock);
	bpf_obj_drop(n);
	return l ? 1 : 0;
}

static _Bool less_walking(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	struct map_val *v = val();

	if (v && bpf_rbtree_left(&v->root, a))
		return 1;
	return node_of(a)->key < node_of(b)->key;
}

SEC("tc")
int walk_in_less(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct node_data *n;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_data);
	if (!n)
		return 2;
	bpf_spin_lock(&v->lock);
	bpf_rbtree_add(&v->root, &n->node, less_walking);
	bpf_spin_unlock(&v->lock);
	return 0;
}

/* the child of a node is a non-owning reference: it cannot be dropped */
SEC("tc")
int drop_child(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *n;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	n = bpf_rbtree_root(&v->root);
	bpf_spin_unlock(&v->lock);
	if (n)
		bpf_obj_drop(node_of(n));
	return 0;
}

/* a root in global data beside its lock: the less callback can name it without a call */
private(W) struct bpf_spin_lock glock;
private(W) struct bpf_rb_root groot __contains(node_data, node);

static _Bool less_left(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	if (bpf_rbtree_left(&groot, a))
		return 1;
	return node_of(a)->key < node_of(b)->key;
}

static _Bool less_root(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	if (bpf_rbtree_root(&groot))
		return 1;
	return node_of(a)->key < node_of(b)->key;
}

static __always_inline int add_global(struct __sk_buff *skb, int which)
{
	struct node_data *n = bpf_obj_new(struct node_data);

	if (!n)
		return 2;
	n->key = skb->len;
	bpf_spin_lock(&glock);
	if (which)
		bpf_rbtree_add(&groot, &n->node, less_root);
	else
		bpf_rbtree_add(&groot, &n->node, less_left);
	bpf_spin_unlock(&glock);
	return 0;
}

SEC("tc")
int left_in_less(struct __sk_buff *skb)
{
	return add_global(skb, 0);
}

SEC("tc")
int root_in_less(struct __sk_buff *skb)
{
	return add_global(skb, 1);
}

/* a node added in an earlier critical section is no longer a reference at all */
SEC("tc")
int right_unlocked(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data);
	struct bpf_rb_node *r;

	if (!n)
		return 2;
	bpf_spin_lock(&glock);
	bpf_rbtree_add(&groot, &n->node, less);
	bpf_spin_unlock(&glock);
	bpf_spin_lock(&glock);
	r = bpf_rbtree_right(&groot, &n->node);
	bpf_spin_unlock(&glock);
	return r ? 1 : 0;
}

/* the global tree: additions with the plain callback, and a walk, under its own lock */
SEC("tc")
int add_global_ok(struct __sk_buff *skb)
{
	struct node_data *n = bpf_obj_new(struct node_data);

	if (!n)
		return 2;
	n->key = skb->len;
	bpf_spin_lock(&glock);
	bpf_rbtree_add(&groot, &n->node, less);
	bpf_spin_unlock(&glock);
	return 0;
}


SEC("tc")
int walk_global(struct __sk_buff *skb)
{
	struct bpf_rb_node *n;
	long key = -1;

	bpf_spin_lock(&glock);
	n = bpf_rbtree_root(&groot);
	if (n)
		n = bpf_rbtree_right(&groot, n);
	if (n)
		key = node_of(n)->key;
	bpf_spin_unlock(&glock);
	return key;
}

/* the other tree's lock does not protect this root */
SEC("tc")
int root_wrong_lock(struct __sk_buff *skb)
{
	struct map_val *v = val();
	struct bpf_rb_node *n;

	if (!v)
		return 1;
	bpf_spin_lock(&glock);
	n = bpf_rbtree_root(&v->root);
	bpf_spin_unlock(&glock);
	return n ? 1 : 0;
}
