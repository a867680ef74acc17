// Global functions with typed arguments: dynptrs, trusted task pointers; locks and packet-changing globals.
#include "kern_types.h"

#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))

struct val { struct bpf_spin_lock lock; int n; };
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct val);
} locked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} rb SEC(".maps");

extern __u32 bpf_dynptr_size(const struct bpf_dynptr *p) __ksym;

__attribute__((noinline)) int bump(int x) { return x + 1; }

/* a dynptr argument: a read-only local dynptr */
__attribute__((noinline)) int dyn_len(struct bpf_dynptr *p)
{
	return bpf_dynptr_size(p);
}

SEC("tc")
int dynptr_caller(struct __sk_buff *skb)
{
	struct bpf_dynptr d;
	char buf[16] = {};

	bpf_dynptr_from_mem(buf, sizeof(buf), 0, &d);
	return dyn_len(&d);
}

/* a global call inside a spin-locked region is refused */
SEC("tc")
int call_under_lock(struct __sk_buff *skb)
{
	int key = 0, r;
	struct val *v = bpf_map_lookup_elem(&locked, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	r = bump(v->n);
	bpf_spin_unlock(&v->lock);
	return r;
}

/* a trusted task argument */
__attribute__((noinline)) int task_pid(struct task_struct *t __arg_trusted)
{
	return t->pid;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(switch_pid, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return task_pid(next) & 0;
}

__attribute__((noinline)) int task_pid_nullable(struct task_struct *t __arg_trusted __arg_nullable)
{
	return t ? t->tgid : 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(switch_nullable, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return task_pid_nullable(0) & task_pid_nullable(prev) & 0;
}

/* a global that changes packet data invalidates the caller's packet pointers */
__attribute__((noinline)) int pull(struct __sk_buff *skb)
{
	return bpf_skb_pull_data(skb, 64);
}

SEC("tc")
int pkt_then_pull(struct __sk_buff *skb)
{
	unsigned char *data = (void *)(long)skb->data;
	unsigned char *end = (void *)(long)skb->data_end;

	if (data + 1 > end)
		return 0;
	pull(skb);
	return data[0];
}

char LICENSE[] SEC("license") = "GPL";
