// SPDX-License-Identifier: GPL-2.0
/* Map-in-map and tail calls: an array of hash maps (one per tenant, two of them given as
 * initial values) and a program array dispatching to per-protocol programs, filled by
 * libbpf from the declaration. */
#include "common.h"

struct inner_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} tenant_a SEC(".maps"), tenant_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_map);
} tenants SEC(".maps") = {
	.values = { [0] = &tenant_a, [2] = &tenant_b },
};

int xdp_udp(struct xdp_md *ctx);
int xdp_tcp(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__array(values, int (void *));
} dispatch SEC(".maps") = {
	.values = { [IPPROTO_TCP] = (void *)&xdp_tcp, [IPPROTO_UDP] = (void *)&xdp_udp },
};

static __always_inline int count(__u32 tenant, __u32 proto)
{
	__u64 one = 1, *cnt;
	void *inner = bpf_map_lookup_elem(&tenants, &tenant);

	if (!inner)
		return XDP_PASS;
	cnt = bpf_map_lookup_elem(inner, &proto);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	else
		bpf_map_update_elem(inner, &proto, &one, BPF_ANY);
	return XDP_PASS;
}

SEC("xdp")
int xdp_udp(struct xdp_md *ctx)
{
	return count(0, IPPROTO_UDP);
}

SEC("xdp")
int xdp_tcp(struct xdp_md *ctx)
{
	return count(2, IPPROTO_TCP);
}

SEC("xdp")
int xdp_dispatch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	bpf_tail_call(ctx, &dispatch, ip->protocol);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
