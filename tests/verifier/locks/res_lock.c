// Resilient spin locks (bpf_res_spin_lock): taking one may fail (deadlock, timeout), so
// the program must check the result; the verifier follows both outcomes. Up to the
// _irqsave variants, which also save the interrupt state in a flag slot.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __ksym __attribute__((section(".ksyms")))

struct bpf_res_spin_lock {
	__u32 val;
};

extern int bpf_res_spin_lock(struct bpf_res_spin_lock *lock) __ksym __weak;
extern void bpf_res_spin_unlock(struct bpf_res_spin_lock *lock) __ksym __weak;
extern int bpf_res_spin_lock_irqsave(struct bpf_res_spin_lock *lock,
				     unsigned long *flags__irq_flag) __ksym __weak;
extern void bpf_res_spin_unlock_irqrestore(struct bpf_res_spin_lock *lock,
					   unsigned long *flags__irq_flag) __ksym __weak;
extern void bpf_local_irq_save(unsigned long *flags__irq_flag) __ksym __weak;
extern void bpf_local_irq_restore(unsigned long *flags__irq_flag) __ksym __weak;

struct elem {
	struct bpf_res_spin_lock lock;
	__u32 pad;
	__u64 cnt;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct elem);
} locked SEC(".maps");

static struct elem *elem(__u32 key)
{
	return bpf_map_lookup_elem(&locked, &key);
}

SEC("syscall")
int lock_ok(void *ctx)
{
	struct elem *e = elem(0);

	if (!e)
		return -1;
	if (bpf_res_spin_lock(&e->lock))
		return 1;
	e->cnt += 5;
	bpf_res_spin_unlock(&e->lock);
	return e->cnt;
}

SEC("syscall")
int unchecked(void *ctx)
{
	struct elem *e = elem(0);

	if (!e)
		return -1;
	bpf_res_spin_lock(&e->lock);
	e->cnt += 1;
	bpf_res_spin_unlock(&e->lock);
	return 0;
}

SEC("syscall")
int exit_held(void *ctx)
{
	struct elem *e = elem(0);

	if (!e)
		return -1;
	if (bpf_res_spin_lock(&e->lock))
		return 1;
	return 0;
}

SEC("syscall")
int same_twice(void *ctx)
{
	struct elem *e = elem(0);

	if (!e)
		return -1;
	if (bpf_res_spin_lock(&e->lock))
		return 1;
	if (bpf_res_spin_lock(&e->lock)) {
		bpf_res_spin_unlock(&e->lock);
		return 2;
	}
	bpf_res_spin_unlock(&e->lock);
	bpf_res_spin_unlock(&e->lock);
	return 0;
}

SEC("syscall")
int two_nested(void *ctx)
{
	struct elem *a = elem(0), *b = elem(1);

	if (!a || !b)
		return -1;
	if (bpf_res_spin_lock(&a->lock))
		return 1;
	if (bpf_res_spin_lock(&b->lock)) {
		bpf_res_spin_unlock(&a->lock);
		return 2;
	}
	a->cnt += 1;
	b->cnt += 2;
	bpf_res_spin_unlock(&b->lock);
	bpf_res_spin_unlock(&a->lock);
	return 0;
}

SEC("syscall")
int two_out_of_order(void *ctx)
{
	struct elem *a = elem(0), *b = elem(1);

	if (!a || !b)
		return -1;
	if (bpf_res_spin_lock(&a->lock))
		return 1;
	if (bpf_res_spin_lock(&b->lock)) {
		bpf_res_spin_unlock(&a->lock);
		return 2;
	}
	bpf_res_spin_unlock(&a->lock);
	bpf_res_spin_unlock(&b->lock);
	return 0;
}

SEC("syscall")
int irqsave_ok(void *ctx)
{
	struct elem *e = elem(1);
	unsigned long flags;

	if (!e)
		return -1;
	if (bpf_res_spin_lock_irqsave(&e->lock, &flags))
		return 1;
	e->cnt += 7;
	bpf_res_spin_unlock_irqrestore(&e->lock, &flags);
	return e->cnt;
}

SEC("syscall")
int irq_mixed(void *ctx)
{
	struct elem *e = elem(1);
	unsigned long flags;

	if (!e)
		return -1;
	if (bpf_res_spin_lock_irqsave(&e->lock, &flags))
		return 1;
	bpf_local_irq_restore(&flags);
	bpf_res_spin_unlock(&e->lock);
	return 0;
}

SEC("syscall")
int helper_inside(void *ctx)
{
	struct elem *e = elem(1);

	if (!e)
		return -1;
	if (bpf_res_spin_lock(&e->lock))
		return 1;
	e->cnt = bpf_ktime_get_ns();
	bpf_res_spin_unlock(&e->lock);
	return 0;
}

SEC("syscall")
int unlock_unlocked(void *ctx)
{
	struct elem *e = elem(1);

	if (!e)
		return -1;
	bpf_res_spin_unlock(&e->lock);
	return 0;
}

SEC("syscall")
int touch_lock(void *ctx)
{
	struct elem *e = elem(1);

	if (!e)
		return -1;
	return e->lock.val;
}

char _license[] SEC("license") = "GPL";
