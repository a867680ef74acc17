// Refcounted nodes (struct bpf_refcount) in a list and an rbtree at once, as the kernel
// selftests' refcounted_kptr.c does: bpf_refcount_acquire of an owning and of a
// non-owning reference (the latter may fail: KF_RET_NULL), MEM_RCU non-owning refs.
#include "graph_common.h"

char _license[] SEC("license") = "GPL";

struct node_rc {
	long key;
	struct bpf_list_node l;
	struct bpf_rb_node r;
	struct bpf_refcount ref;
};
struct map_val {
	struct bpf_spin_lock lock;
	struct bpf_list_head head __contains(node_rc, l);
	struct bpf_rb_root root __contains(node_rc, r);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct map_val);
} both SEC(".maps");

static _Bool less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	return container_of(a, struct node_rc, r)->key < container_of(b, struct node_rc, r)->key;
}

/* one node with key = skb->len, in the list and in the tree */
SEC("tc")
int add_both(struct __sk_buff *skb)
{
	int k = 0;
	struct map_val *v = bpf_map_lookup_elem(&both, &k);
	struct node_rc *n, *m;

	if (!v)
		return 1;
	n = bpf_obj_new(struct node_rc);
	if (!n)
		return 2;
	n->key = skb->len;
	m = bpf_refcount_acquire(n);   /* owning: cannot fail */
	bpf_spin_lock(&v->lock);
	bpf_rbtree_add(&v->root, &n->r, less);
	bpf_list_push_back(&v->head, &m->l);
	bpf_spin_unlock(&v->lock);
	return 0;
}

/* the list's first node, also taken out of the tree by way of a second reference */
SEC("tc")
int take_both(struct __sk_buff *skb)
{
	int k = 0;
	struct map_val *v = bpf_map_lookup_elem(&both, &k);
	struct bpf_list_node *l;
	struct bpf_rb_node *r;
	struct node_rc *n, *m;
	long key;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	l = bpf_list_pop_front(&v->head);
	if (!l) {
		bpf_spin_unlock(&v->lock);
		return -1;
	}
	n = container_of(l, struct node_rc, l);
	r = bpf_rbtree_remove(&v->root, &n->r);
	bpf_spin_unlock(&v->lock);
	key = n->key;
	bpf_obj_drop(n);
	if (!r)
		return -2;
	bpf_obj_drop(container_of(r, struct node_rc, r));
	return key;
}

/* a second reference to the tree's first node, through its non-owning reference */
SEC("tc")
int acquire_non_owning(struct __sk_buff *skb)
{
	int k = 0;
	struct map_val *v = bpf_map_lookup_elem(&both, &k);
	struct bpf_rb_node *f;
	struct node_rc *m = 0;
	long key = -1;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	f = bpf_rbtree_first(&v->root);
	if (f)
		m = bpf_refcount_acquire(container_of(f, struct node_rc, r));
	bpf_spin_unlock(&v->lock);
	if (m) {
		key = m->key;
		bpf_obj_drop(m);
	}
	return key;
}

SEC("tc")
int acquire_no_check(struct __sk_buff *skb)
{
	int k = 0;
	struct map_val *v = bpf_map_lookup_elem(&both, &k);
	struct bpf_rb_node *f;
	struct node_rc *m;
	long key = -1;

	if (!v)
		return 1;
	bpf_spin_lock(&v->lock);
	f = bpf_rbtree_first(&v->root);
	if (!f) {
		bpf_spin_unlock(&v->lock);
		return 0;
	}
	m = bpf_refcount_acquire(container_of(f, struct node_rc, r));
	bpf_spin_unlock(&v->lock);
	key = m->key;
	bpf_obj_drop(m);
	return key;
}
