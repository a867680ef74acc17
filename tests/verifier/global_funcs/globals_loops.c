// Global functions with loops, packet pointers and callbacks beside them.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

struct pair { int a; int b; };

__attribute__((noinline)) int clamp(int x)
{
	if (x > 100)
		return 100;
	if (x < 0)
		return 0;
	return x;
}

/* a global function with a loop and a buffer argument */
__attribute__((noinline)) int sum_buf(unsigned char *buf)
{
	int i, s = 0;

	if (!buf)
		return -1;
	for (i = 0; i < 16; i++)
		s += buf[i];
	return s;
}

SEC("tc")
int loop_caller(struct __sk_buff *skb)
{
	unsigned char buf[16] = {};
	int i, s = 0;

	for (i = 0; i < 4; i++)
		s += clamp(skb->len + i);
	buf[3] = s;
	return sum_buf(buf) + s;
}

/* a global's result is an unknown scalar: indexing with it needs a check */
SEC("tc")
int index_by_result(struct __sk_buff *skb)
{
	unsigned char buf[8] = {};
	int i = clamp(skb->len);

	if (i < 8)
		return buf[i];
	return 0;
}

/* packet pointers survive a call to a global that does not change packet data */
SEC("tc")
int pkt_after_call(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	int r;

	if ((void *)(eth + 1) > end)
		return 0;
	r = clamp(eth->h_proto);
	return r + eth->h_dest[0];
}

static int cb(__u32 idx, void *ctx)
{
	*(long *)ctx += idx;
	return 0;
}

SEC("tc")
int loop_cb(struct __sk_buff *skb)
{
	long sum = 0;

	bpf_loop(8, cb, &sum, 0);
	return sum;
}

static __attribute__((noinline)) int static_int(int x, int y) { return x * y; }

SEC("tc")
int static_calls(struct __sk_buff *skb)
{
	return static_int(skb->len, 3) + clamp(skb->mark);
}

char LICENSE[] SEC("license") = "GPL";
