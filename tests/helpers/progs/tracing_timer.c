// bpf_timer_* from a syscall program: the errnos of misuse, then a timer that re-arms
// itself once from its callback. Every delay is tens of milliseconds, so no timer fires
// while a program runs and the kernel's results are deterministic. Built by `make -C tests/helpers/progs` (the .o is
// committed: tests never need clang). tests/helpers/test_tracing_helpers_timer.py runs it
// in pybpf and in the live kernel.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define CLOCK_MONOTONIC 1

struct elem {
	struct bpf_timer t;
	__u64 fired;
	__u64 rearm_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, int);
	__type(value, struct elem);
} timers SEC(".maps");

__s64 results[10];

static int on_timer(void *map, int *key, struct elem *v)
{
	v->fired += 1 + (__u64)*key * 100;
	if (v->rearm_ns) {
		results[9] = bpf_timer_cancel(&v->t);  // -EDEADLK: own callback
		bpf_timer_start(&v->t, v->rearm_ns, 0);
		v->rearm_ns = 0;
	}
	return 0;
}

SEC("syscall")
int arm(void *ctx)
{
	int k = 1;
	struct elem *v = bpf_map_lookup_elem(&timers, &k);

	if (!v)
		return -1;
	results[0] = bpf_timer_start(&v->t, 50000000, 0);
	results[1] = bpf_timer_cancel(&v->t);
	results[2] = bpf_timer_set_callback(&v->t, on_timer);
	results[3] = bpf_timer_init(&v->t, &timers, 5);
	results[4] = bpf_timer_init(&v->t, &timers, CLOCK_MONOTONIC);
	results[5] = bpf_timer_init(&v->t, &timers, CLOCK_MONOTONIC);
	results[6] = bpf_timer_start(&v->t, 50000000, 0);
	results[7] = bpf_timer_set_callback(&v->t, on_timer);
	results[8] = bpf_timer_start(&v->t, 50000000, 4);
	v->rearm_ns = 40000000;
	return bpf_timer_start(&v->t, 30000000, 0);
}

SEC("syscall")
int cancel(void *ctx)
{
	int k = 1;
	struct elem *v = bpf_map_lookup_elem(&timers, &k);

	if (!v)
		return -1;
	return bpf_timer_cancel(&v->t);
}

char LICENSE[] SEC("license") = "GPL";
