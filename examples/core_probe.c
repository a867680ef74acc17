// SPDX-License-Identifier: GPL-2.0
/* CO-RE and externs: every kind of CO-RE relocation (field offset/exists/size/signedness,
 * type id/exists/size, enum value exists/value) against kernel types declared locally,
 * plus .kconfig and .ksyms externs. A kprobe, as tracing tools write them. */
#include "common.h"
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
	int tgid;
	unsigned int flags;
	void *no_such_field_in_any_kernel;
} __attribute__((preserve_access_index));

struct pt_regs {
	unsigned long di;
	unsigned long si;
} __attribute__((preserve_access_index));

enum bpf_map_type___local {
	BPF_MAP_TYPE_HASH___local = 1,
	BPF_MAP_TYPE_RINGBUF___local = 999,
};

struct no_such_type___x {
	int a;
};

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig __weak;
extern _Bool CONFIG_BPF_SYSCALL __kconfig;
extern const void bpf_prog_active __ksym __weak;

__u64 results[16] = {};

SEC("kprobe/do_nanosleep")
int probe_nanosleep(struct pt_regs *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	results[0] = bpf_core_field_offset(struct task_struct, tgid);
	results[1] = bpf_core_field_exists(task->no_such_field_in_any_kernel);
	results[2] = bpf_core_field_size(task->flags);
	results[3] = __builtin_preserve_field_info(task->pid, BPF_FIELD_SIGNED);
	results[4] = bpf_core_type_exists(struct task_struct);
	results[5] = bpf_core_type_exists(struct no_such_type___x);
	results[6] = bpf_core_type_size(struct task_struct);
	results[7] = bpf_core_type_id_kernel(struct task_struct);
	results[8] = bpf_core_enum_value_exists(enum bpf_map_type___local, BPF_MAP_TYPE_RINGBUF___local);
	results[9] = bpf_core_enum_value(enum bpf_map_type___local, BPF_MAP_TYPE_HASH___local);
	results[10] = BPF_CORE_READ(task, tgid);
	results[11] = LINUX_KERNEL_VERSION;
	results[12] = CONFIG_HZ;
	results[13] = CONFIG_BPF_SYSCALL;
	results[14] = (__u64)&bpf_prog_active;
	results[15] = BPF_CORE_READ(ctx, di);
	return 0;
}

char _license[] SEC("license") = "GPL";
