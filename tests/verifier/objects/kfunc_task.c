// Task kfuncs: acquire/release and an RCU read-side section.
// (Referenced kptrs in map values need clang >= 15 for BTF type tags: the verifier
// corpus covers them with hand-written BTF.)
#include "kern_types.h"

extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, long);
} seen SEC(".maps");

/* a referenced task: acquired, read, released (leaking it is refused) */
SEC("tp_btf/sched_switch")
int BPF_PROG(hold_next, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct task_struct *acquired;
	int key = 0;
	long *v = bpf_map_lookup_elem(&seen, &key);

	if (!v)
		return 0;
	acquired = bpf_task_acquire(next);
	if (!acquired)
		return 0;
	*v = acquired->pid;
	bpf_task_release(acquired);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rcu_parent, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct task_struct *parent;
	int pid = 0;

	bpf_rcu_read_lock();
	parent = next->real_parent;
	if (parent)
		pid = parent->pid;
	bpf_rcu_read_unlock();
	return pid & 1;
}

char LICENSE[] SEC("license") = "GPL";
