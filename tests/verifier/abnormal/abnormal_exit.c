// Subprograms with a hidden exit: a bpf_tail_call that succeeds leaves the subprog (the
// caller sees an unknown R0), a failed ld_abs/ld_ind leaves it with R0 = 0. Linux 6.18
// verifies both ways out of the instruction.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} jmp_table SEC(".maps");

static __attribute__((noinline)) int tail_sub(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &jmp_table, 0);
	return skb->len * 2;
}

SEC("tc")
int tail_in_subprog(struct __sk_buff *skb)
{
	return tail_sub(skb) + 1;
}

/* the caller uses R0 as a packet offset: the tail-call path's unknown R0 is refused */
static __attribute__((noinline)) int tail_sub_off(struct __sk_buff *skb)
{
	bpf_tail_call(skb, &jmp_table, 1);
	return 4;
}

SEC("tc")
int tail_result_used(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	int off = tail_sub_off(skb);

	if (data + 8 > end)
		return 0;
	return *(__u8 *)(data + off);
}

static __attribute__((noinline)) int ld_sub(struct __sk_buff *skb)
{
	return load_byte(skb, 12) + 1;
}

SEC("socket")
int ld_abs_in_subprog(struct __sk_buff *skb)
{
	return ld_sub(skb);
}

/* the failure path returns 0, which the caller divides by */
static __attribute__((noinline)) unsigned int ld_sub_div(struct __sk_buff *skb)
{
	return load_half(skb, 12) | 1;
}

SEC("socket")
int ld_abs_zero_path(struct __sk_buff *skb)
{
	unsigned int v = ld_sub_div(skb);

	return v ? 1000 / v : 0;
}

char _license[] SEC("license") = "GPL";
