// A lock and a list inside an allocated object (its own btf_record): the object's lock
// protects its list; the object itself is a node of a list in a map value.
#include "graph_common.h"
char _license[] SEC("license") = "GPL";

struct bar { long key; struct bpf_list_node node; };
struct foo {
	struct bpf_list_node node;
	struct bpf_list_head head __contains(bar, node);
	struct bpf_spin_lock lock;
	long data;
};
struct map_val {
	struct bpf_spin_lock lock;
	struct bpf_list_head head __contains(foo, node);
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct map_val);
} lists SEC(".maps");

SEC("tc")
int in_obj(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	struct bar *b;
	struct bpf_list_node *n;
	long k;
	if (!f)
		return 1;
	b = bpf_obj_new(struct bar);
	if (!b) {
		bpf_obj_drop(f);
		return 2;
	}
	b->key = skb->len;
	bpf_spin_lock(&f->lock);
	bpf_list_push_front(&f->head, &b->node);
	n = bpf_list_pop_front(&f->head);
	bpf_spin_unlock(&f->lock);
	if (!n) { bpf_obj_drop(f); return 3; }
	k = container_of(n, struct bar, node)->key;
	bpf_obj_drop(container_of(n, struct bar, node));
	bpf_obj_drop(f);
	return k;
}

SEC("tc")
int in_obj_keep(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	struct bar *b;
	int k = 0;
	struct map_val *v = bpf_map_lookup_elem(&lists, &k);
	if (!f)
		return 1;
	if (!v) { bpf_obj_drop(f); return 4; }
	b = bpf_obj_new(struct bar);
	if (!b) {
		bpf_obj_drop(f);
		return 2;
	}
	b->key = skb->len;
	bpf_spin_lock(&f->lock);
	bpf_list_push_front(&f->head, &b->node);
	bpf_spin_unlock(&f->lock);
	bpf_spin_lock(&v->lock);
	bpf_list_push_front(&v->head, &f->node);
	bpf_spin_unlock(&v->lock);
	return 0;
}

SEC("tc")
int in_obj_nolock(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	struct bar *b;
	if (!f)
		return 1;
	b = bpf_obj_new(struct bar);
	if (!b) {
		bpf_obj_drop(f);
		return 2;
	}
	bpf_list_push_front(&f->head, &b->node);
	bpf_obj_drop(f);
	return 0;
}

SEC("tc")
int lock_obj(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	if (!f)
		return 1;
	bpf_spin_lock(&f->lock);
	f->data = 5;
	bpf_spin_unlock(&f->lock);
	bpf_obj_drop(f);
	return 0;
}

struct bpf_res_spin_lock { __u32 val; };
extern int bpf_res_spin_lock(struct bpf_res_spin_lock *lock) __ksym __weak;
extern void bpf_res_spin_unlock(struct bpf_res_spin_lock *lock) __ksym __weak;
struct res_obj { struct bpf_res_spin_lock lock; long data; };
struct plain_obj { long data; };

SEC("tc")
int res_lock_obj(struct __sk_buff *skb)
{
	struct res_obj *o = bpf_obj_new(struct res_obj);
	if (!o)
		return 1;
	if (bpf_res_spin_lock(&o->lock)) {
		bpf_obj_drop(o);
		return 2;
	}
	o->data = skb->len;
	bpf_res_spin_unlock(&o->lock);
	bpf_obj_drop(o);
	return 0;
}

SEC("tc")
int lock_no_lock_obj(struct __sk_buff *skb)
{
	struct plain_obj *o = bpf_obj_new(struct plain_obj);
	if (!o)
		return 1;
	bpf_spin_lock((void *)o);
	bpf_spin_unlock((void *)o);
	bpf_obj_drop(o);
	return 0;
}

SEC("tc")
int lock_two_objs(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	struct foo *g;
	if (!f)
		return 1;
	g = bpf_obj_new(struct foo);
	if (!g) {
		bpf_obj_drop(f);
		return 2;
	}
	bpf_spin_lock(&f->lock);
	bpf_spin_unlock(&g->lock);
	bpf_obj_drop(f);
	bpf_obj_drop(g);
	return 0;
}

SEC("tc")
int wrong_obj_lock(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	struct foo *g;
	struct bar *b;
	if (!f)
		return 1;
	g = bpf_obj_new(struct foo);
	if (!g) {
		bpf_obj_drop(f);
		return 2;
	}
	b = bpf_obj_new(struct bar);
	if (!b) {
		bpf_obj_drop(f);
		bpf_obj_drop(g);
		return 3;
	}
	bpf_spin_lock(&g->lock);
	bpf_list_push_front(&f->head, &b->node);
	bpf_spin_unlock(&g->lock);
	bpf_obj_drop(f);
	bpf_obj_drop(g);
	return 0;
}
