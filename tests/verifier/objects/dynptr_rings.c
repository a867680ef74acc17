// Dynptrs end to end: requests from user space drained from a USER_RINGBUF (the callback
// reads each through its dynptr), the result written to a RINGBUF through a ringbuf dynptr.
#include "kern_types.h"

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} requests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

static long on_request(struct bpf_dynptr *dynptr, void *ctx)
{
	long v;

	if (bpf_dynptr_read(&v, sizeof(v), dynptr, 0, 0))
		return 1; /* stop: a short record */
	*(long *)ctx += v;
	return 0;
}

SEC("xdp")
int drain_requests(struct xdp_md *ctx)
{
	long sum = 0, n;
	struct bpf_dynptr ptr;

	n = bpf_user_ringbuf_drain(&requests, on_request, &sum, 0);
	if (bpf_ringbuf_reserve_dynptr(&events, 16, 0, &ptr)) {
		bpf_ringbuf_discard_dynptr(&ptr, 0);
		return XDP_ABORTED;
	}
	bpf_dynptr_write(&ptr, 0, &sum, sizeof(sum), 0);
	bpf_dynptr_write(&ptr, 8, &n, sizeof(n), 0);
	bpf_ringbuf_submit_dynptr(&ptr, 0);
	return n > 0 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
