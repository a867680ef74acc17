// A global function that may sleep (bpf_copy_from_user): callable from a sleepable
// program only, and never inside an RCU read-side section.
#include "kern_types.h"

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

__attribute__((noinline)) int peek(long uaddr)
{
	long v = 0;

	if (bpf_copy_from_user(&v, sizeof(v), (const void *)uaddr))
		return 0;
	return (int)v;
}

SEC("tc")
int nonsleep_caller(struct __sk_buff *skb)
{
	return peek(skb->mark);
}

SEC("iter.s/task")
int sleep_caller(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;

	if (!t)
		return 0;
	return peek(0) & 0;
}

SEC("iter.s/task")
int sleep_in_rcu(struct bpf_iter__task *ctx)
{
	int r;

	bpf_rcu_read_lock();
	r = peek(0);
	bpf_rcu_read_unlock();
	return r & 0;
}

char LICENSE[] SEC("license") = "GPL";
