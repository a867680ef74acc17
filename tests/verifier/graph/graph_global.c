// Locks and graph roots in global data: `.data.A` / `.data.B` sections whose map values are
// DATASECs (btf_find_datasec_var). The lock beside a root in the same section protects it.
#include "graph_common.h"
char _license[] SEC("license") = "GPL";

struct foo { long key; struct bpf_list_node node; long data; };
struct bar { long key; struct bpf_rb_node rb; };

private(A) struct bpf_spin_lock glock;
private(A) struct bpf_list_head ghead __contains(foo, node);
private(B) struct bpf_spin_lock glock2;
private(B) struct bpf_rb_root groot __contains(bar, rb);
long counter;

/* an array of roots beside one lock, and a lock and root in a struct nested in a global */
private(C) struct bpf_spin_lock glock_c;
private(C) struct bpf_list_head ghead_arr[2] __contains(foo, node);
struct nested_inner {
	struct bpf_spin_lock lock;
	struct bpf_list_head head __contains(foo, node);
};
struct nested { long dummy; struct nested_inner inner; };
private(D) struct nested gnested;

static _Bool less(struct bpf_rb_node *a, const struct bpf_rb_node *b)
{
	return container_of(a, struct bar, rb)->key < container_of(b, struct bar, rb)->key;
}

SEC("tc")
int g_push(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	if (!f)
		return 1;
	f->key = skb->len;
	bpf_spin_lock(&glock);
	bpf_list_push_back(&ghead, &f->node);
	bpf_spin_unlock(&glock);
	counter++;
	return 0;
}

SEC("tc")
int g_pop(struct __sk_buff *skb)
{
	struct bpf_list_node *n;
	long k;
	bpf_spin_lock(&glock);
	n = bpf_list_pop_front(&ghead);
	bpf_spin_unlock(&glock);
	if (!n)
		return -1;
	k = container_of(n, struct foo, node)->key;
	bpf_obj_drop(container_of(n, struct foo, node));
	return k;
}

SEC("tc")
int g_no_lock(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	if (!f)
		return 1;
	bpf_list_push_back(&ghead, &f->node);
	return 0;
}

SEC("tc")
int g_wrong_lock(struct __sk_buff *skb)
{
	struct foo *f = bpf_obj_new(struct foo);
	if (!f)
		return 1;
	bpf_spin_lock(&glock2);
	bpf_list_push_back(&ghead, &f->node);
	bpf_spin_unlock(&glock2);
	return 0;
}

SEC("tc")
int g_rb(struct __sk_buff *skb)
{
	struct bar *b = bpf_obj_new(struct bar);
	struct bpf_rb_node *n;
	long k = -1;
	if (!b)
		return 1;
	b->key = skb->len;
	bpf_spin_lock(&glock2);
	bpf_rbtree_add(&groot, &b->rb, less);
	n = bpf_rbtree_first(&groot);
	if (n)
		k = container_of(n, struct bar, rb)->key;
	bpf_spin_unlock(&glock2);
	return k;
}

SEC("tc")
int g_two_locks(struct __sk_buff *skb)
{
	bpf_spin_lock(&glock);
	bpf_spin_lock(&glock2);
	bpf_spin_unlock(&glock2);
	bpf_spin_unlock(&glock);
	return 0;
}

SEC("tc")
int g_unlock_other(struct __sk_buff *skb)
{
	bpf_spin_lock(&glock);
	bpf_spin_unlock(&glock2);
	return 0;
}

SEC("tc")
int g_counter(struct __sk_buff *skb)
{
	return counter;
}

static __always_inline long push_pop(struct bpf_spin_lock *lock, struct bpf_list_head *head,
				     long key)
{
	struct bpf_list_node *n;
	struct foo *f = bpf_obj_new(struct foo);

	if (!f)
		return 1;
	f->key = key;
	bpf_spin_lock(lock);
	bpf_list_push_back(head, &f->node);
	n = bpf_list_pop_front(head);
	bpf_spin_unlock(lock);
	if (!n)
		return -1;
	key = container_of(n, struct foo, node)->key;
	bpf_obj_drop(container_of(n, struct foo, node));
	return key;
}

SEC("tc")
int g_array_roots(struct __sk_buff *skb)
{
	return push_pop(&glock_c, &ghead_arr[0], skb->len) +
	       push_pop(&glock_c, &ghead_arr[1], 2 * skb->len);
}

SEC("tc")
int g_nested_root(struct __sk_buff *skb)
{
	return push_pop(&gnested.inner.lock, &gnested.inner.head, skb->len);
}

SEC("tc")
int g_array_wrong_lock(struct __sk_buff *skb)
{
	return push_pop(&glock, &ghead_arr[1], skb->len);
}

/* tracing programs may not use maps holding graph roots */
SEC("kprobe/do_nanosleep")
int g_kprobe(void *ctx)
{
	return push_pop(&glock_c, &ghead_arr[0], 1);
}
