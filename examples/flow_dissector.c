// SPDX-License-Identifier: GPL-2.0
/* Flow dissector: Ethernet (with up to two VLAN tags) -> IPv4/IPv6 -> TCP/UDP ports,
 * filling struct bpf_flow_keys the way the kernel's C dissector would, and counting
 * the packets it saw per outcome in an array map. */
#include "common.h"

#define VLAN_HLEN 4
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

enum { SEEN_V4, SEEN_V6, SEEN_FRAG, SEEN_L4, SEEN_BAD, SEEN_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SEEN_MAX);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline void count(__u32 what)
{
	__u64 *cnt = bpf_map_lookup_elem(&seen, &what);

	if (cnt)
		__sync_fetch_and_add(cnt, 1);
}

static __always_inline int bad(void)
{
	count(SEEN_BAD);
	return BPF_DROP;
}

#define MAX_HDR_OFF 512 /* keeps variable packet offsets small enough to verify */

/* The header of `size` bytes at `off`: in the linear data when it is there, else copied
 * into `buf` by bpf_skb_load_bytes (which fails when there is no skb, as in test runs). */
static __always_inline void *header(struct __sk_buff *skb, __u16 off, __u16 size, void *buf)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	void *hdr;

	if (off > MAX_HDR_OFF)
		return 0;
	hdr = data + off;
	if (hdr + size <= data_end)
		return hdr;
	if (bpf_skb_load_bytes(skb, off, buf, size))
		return 0;
	return buf;
}

static __always_inline int l4(struct __sk_buff *skb, struct bpf_flow_keys *keys, __u8 proto)
{
	__be16 buf[2], *p;

	keys->ip_proto = proto;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return BPF_OK;
	p = header(skb, keys->thoff, sizeof(buf), buf);
	if (!p)
		return bad();
	keys->sport = p[0];
	keys->dport = p[1];
	count(SEEN_L4);
	return BPF_OK;
}

SEC("flow_dissector")
int dissect(struct __sk_buff *skb)
{
	struct bpf_flow_keys *keys = skb->flow_keys;
	__be16 proto = keys->n_proto;
	int i;

	for (i = 0; i < 2; i++) {
		struct vlan_hdr vbuf, *vlan;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		vlan = header(skb, keys->nhoff, sizeof(vbuf), &vbuf);
		if (!vlan)
			return bad();
		proto = vlan->proto;
		keys->nhoff += VLAN_HLEN;
		keys->thoff += VLAN_HLEN;
	}
	keys->n_proto = proto;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ibuf, *ip = header(skb, keys->nhoff, sizeof(ibuf), &ibuf);
		__u16 frag;

		if (!ip || ip->ihl < 5)
			return bad();
		count(SEEN_V4);
		keys->addr_proto = ETH_P_IP;
		keys->ipv4_src = ip->saddr;
		keys->ipv4_dst = ip->daddr;
		keys->thoff = keys->nhoff + ip->ihl * 4;
		frag = bpf_ntohs(ip->frag_off);
		if (frag & (IP_MF | IP_OFFSET)) {
			keys->is_frag = 1;
			count(SEEN_FRAG);
			if (frag & IP_OFFSET) {
				keys->ip_proto = ip->protocol;
				return BPF_OK;
			}
			keys->is_first_frag = 1;
			if (!(keys->flags & BPF_FLOW_DISSECTOR_F_PARSE_1ST_FRAG)) {
				keys->ip_proto = ip->protocol;
				return BPF_OK;
			}
		}
		return l4(skb, keys, ip->protocol);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ibuf, *ip6 = header(skb, keys->nhoff, sizeof(ibuf), &ibuf);

		if (!ip6)
			return bad();
		count(SEEN_V6);
		keys->addr_proto = ETH_P_IPV6;
		__builtin_memcpy(keys->ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(keys->ipv6_dst, &ip6->daddr, 16);
		keys->flow_label = *(__be32 *)ip6 & bpf_htonl(0x000fffff);
		keys->thoff = keys->nhoff + sizeof(*ip6);
		if (keys->flow_label && keys->flags & BPF_FLOW_DISSECTOR_F_STOP_AT_FLOW_LABEL)
			return BPF_OK;
		return l4(skb, keys, ip6->nexthdr);
	}
	return bad();
}

char LICENSE[] SEC("license") = "GPL";
