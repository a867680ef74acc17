// SPDX-License-Identifier: GPL-2.0
/* Ring buffer event producer: on every execve, reserves an event in a BPF ring buffer,
 * fills it with pid, parent pid (read from task_struct with CO-RE) and comm, and submits
 * it. A minimal "execsnoop". */
#include "common.h"
#include <bpf/bpf_core_read.h>

/* The few kernel types used here; CO-RE relocates the offsets against the running kernel. */
struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
} __attribute__((preserve_access_index));

struct trace_event_raw_sys_enter {
	unsigned long long unused;
	long id;
	unsigned long args[6];
} __attribute__((preserve_access_index));

#define TASK_COMM_LEN 16

struct event {
	__u32 pid;
	__u32 ppid;
	__u64 ts_ns;
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

__u64 dropped = 0;

SEC("tp/syscalls/sys_enter_execve")
int handle_execve(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task;
	struct event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	task = (struct task_struct *)bpf_get_current_task();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char _license[] SEC("license") = "GPL";
