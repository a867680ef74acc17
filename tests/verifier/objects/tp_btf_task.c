// tp_btf programs reading the scheduler's task_struct arguments through BTF pointers.
#include "kern_types.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, int);
	__type(value, long);
} switches SEC(".maps");

/* trusted argument: direct member reads */
SEC("tp_btf/sched_switch")
int BPF_PROG(count_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	int pid = prev->pid;
	long one = 1, *v = bpf_map_lookup_elem(&switches, &pid);

	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&switches, &pid, &one, BPF_ANY);
	return 0;
}

/* walking a pointer member gives an rcu (or untrusted) pointer that may still be read */
SEC("tp_btf/sched_switch")
int BPF_PROG(parent_tgid, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct task_struct *parent = next->real_parent;
	int key = 0;
	long tgid = parent->tgid;

	bpf_map_update_elem(&switches, &key, &tgid, BPF_ANY);
	return 0;
}

/* bpf_get_current_task_btf: a trusted task_struct */
SEC("tp_btf/sched_switch")
int BPF_PROG(current_comm, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	int key = 1;
	long c = cur->comm[0] + cur->group_leader->pid;

	bpf_map_update_elem(&switches, &key, &c, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
