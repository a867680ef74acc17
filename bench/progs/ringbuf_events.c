// Ring buffer: one event per packet through reserve/submit and one through output.
#include "bench_common.h"

struct event {
	__u64 seq;
	__u32 saddr;
	__u32 daddr;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

SEC("xdp")
int ringbuf_events(struct xdp_md *ctx)
{
	PKT_PROLOGUE(ctx)
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return XDP_ABORTED;
	e->seq = load64(data + 50);
	e->saddr = *(__u32 *)(data + 26);
	e->daddr = *(__u32 *)(data + 30);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	struct event copy = {.seq = 1, .saddr = 2, .daddr = 3};
	if (bpf_ringbuf_output(&events, &copy, sizeof(copy), BPF_RB_NO_WAKEUP))
		return XDP_ABORTED;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
