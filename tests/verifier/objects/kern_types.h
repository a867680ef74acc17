/* The few kernel types these programs read, as CO-RE definitions: libbpf (and pybpf's
 * loader) relocate every member offset to the running kernel's BTF, so no vmlinux.h is
 * needed. Names and members are Linux's. */
#ifndef KERN_TYPES_H
#define KERN_TYPES_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define __co_re __attribute__((preserve_access_index))

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
	struct task_struct *real_parent;
	struct task_struct *group_leader;
} __co_re;

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __co_re;

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __co_re;

#endif
