// bpf_task_work: a callback scheduled on a task, run when the task next returns to user
// space (TWA_RESUME) or is signalled (TWA_SIGNAL). The map value holds the struct
// bpf_task_work; the callback gets (map, key, value) of that element.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __ksym __attribute__((section(".ksyms")))

struct task_struct;
struct bpf_map;
struct bpf_task_work {
	__u64 __opaque;
} __attribute__((aligned(8)));

typedef int (*bpf_task_work_callback_t)(struct bpf_map *map, void *key, void *value);

extern int bpf_task_work_schedule_signal_impl(struct task_struct *task, struct bpf_task_work *tw,
					      void *map__map, bpf_task_work_callback_t callback,
					      void *aux__prog) __ksym __weak;
extern int bpf_task_work_schedule_resume_impl(struct task_struct *task, struct bpf_task_work *tw,
					      void *map__map, bpf_task_work_callback_t callback,
					      void *aux__prog) __ksym __weak;

struct elem {
	__u64 runs;
	__u64 key_seen;
	struct bpf_task_work tw;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct elem);
} works SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct elem);
} hworks SEC(".maps");

static int record(struct bpf_map *map, void *key, void *value)
{
	struct elem *e = value;

	e->runs += 1;
	e->key_seen = *(__u32 *)key + 100;
	return 0;
}

/* schedule on element 1 of the array: 0, then -EBUSY while pending */
SEC("syscall")
int schedule_resume(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 key = 1;
	struct elem *e = bpf_map_lookup_elem(&works, &key);
	int a, b;

	if (!e)
		return -1;
	a = bpf_task_work_schedule_resume_impl(task, &e->tw, &works, record, NULL);
	b = bpf_task_work_schedule_resume_impl(task, &e->tw, &works, record, NULL);
	return (a & 0xff) | ((b & 0xff) << 8);
}

SEC("syscall")
int schedule_signal_hash(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 key = 3;
	struct elem init = {}, *e;

	bpf_map_update_elem(&hworks, &key, &init, BPF_NOEXIST);
	e = bpf_map_lookup_elem(&hworks, &key);
	if (!e)
		return -1;
	return bpf_task_work_schedule_signal_impl(task, &e->tw, &hworks, record, NULL);
}

/* refused: the bpf_task_work of one map with another map */
SEC("syscall")
int wrong_map(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 key = 1;
	struct elem *e = bpf_map_lookup_elem(&works, &key);

	if (!e)
		return -1;
	return bpf_task_work_schedule_resume_impl(task, &e->tw, &hworks, record, NULL);
}

/* refused: not the bpf_task_work field */
SEC("syscall")
int wrong_offset(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 key = 1;
	struct elem *e = bpf_map_lookup_elem(&works, &key);

	if (!e)
		return -1;
	return bpf_task_work_schedule_resume_impl(task, (void *)&e->runs, &works, record, NULL);
}

static int bad_ret(struct bpf_map *map, void *key, void *value)
{
	return 5;
}

/* a callback returning 5 */
SEC("syscall")
int callback_returns_5(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 key = 0;
	struct elem *e = bpf_map_lookup_elem(&works, &key);

	if (!e)
		return -1;
	return bpf_task_work_schedule_resume_impl(task, &e->tw, &works, bad_ret, NULL);
}

char _license[] SEC("license") = "GPL";
