// bpf_fastcall patterns: spills and fills of live registers around a call the kernel
// inlines (bpf_get_smp_processor_id) are removed after verification, and the stack they
// used no longer counts — unless something else touches those slots.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __naked __attribute__((naked))
#define __imm(name) [name] "i"(name)
#define __clobber_all "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "memory"

SEC("raw_tp")
__naked int pattern(void)
{
	asm volatile(
	"r1 = 1;"
	"r2 = 2;"
	"*(u64 *)(r10 - 16) = r1;"
	"*(u64 *)(r10 - 8) = r2;"
	"call %[bpf_get_smp_processor_id];"
	"r2 = *(u64 *)(r10 - 8);"
	"r1 = *(u64 *)(r10 - 16);"
	"r0 = r1;"
	"r0 += r2;"
	"exit;"
	:: __imm(bpf_get_smp_processor_id) : __clobber_all);
}

/* another read of a pattern slot: the spills and fills stay */
SEC("raw_tp")
__naked int contract_broken(void)
{
	asm volatile(
	"r1 = 1;"
	"*(u64 *)(r10 - 8) = r1;"
	"call %[bpf_get_smp_processor_id];"
	"r1 = *(u64 *)(r10 - 8);"
	"r0 = *(u64 *)(r10 - 8);"
	"exit;"
	:: __imm(bpf_get_smp_processor_id) : __clobber_all);
}

/* a call that is not inlined keeps its spills (and the subprog its stack) */
SEC("raw_tp")
__naked int not_inlined(void)
{
	asm volatile(
	"r1 = 1;"
	"*(u64 *)(r10 - 8) = r1;"
	"call %[bpf_ktime_get_ns];"
	"r1 = *(u64 *)(r10 - 8);"
	"r0 = r1;"
	"exit;"
	:: __imm(bpf_ktime_get_ns) : __clobber_all);
}

/* 512 bytes of stack in the caller: the callee's pattern slot does not count (tc programs
 * have no private stacks: frames add up) */
SEC("tc")
__naked int cumulative(void)
{
	asm volatile(
	"r1 = 42;"
	"*(u64 *)(r10 - 512) = r1;"
	"call cumulative_sub;"
	"exit;"
	::: __clobber_all);
}

__attribute__((used)) __naked static void cumulative_sub(void)
{
	asm volatile(
	"*(u64 *)(r10 - 8) = r1;"
	"call %[bpf_get_smp_processor_id];"
	"r1 = *(u64 *)(r10 - 8);"
	"exit;"
	:: __imm(bpf_get_smp_processor_id) : __clobber_all);
}

/* the same with a call that is not inlined: too much stack */
SEC("tc")
__naked int cumulative_too_deep(void)
{
	asm volatile(
	"r1 = 42;"
	"*(u64 *)(r10 - 512) = r1;"
	"call cumulative_sub2;"
	"exit;"
	::: __clobber_all);
}

__attribute__((used)) __naked static void cumulative_sub2(void)
{
	asm volatile(
	"*(u64 *)(r10 - 8) = r1;"
	"call %[bpf_ktime_get_ns];"
	"r1 = *(u64 *)(r10 - 8);"
	"exit;"
	:: __imm(bpf_ktime_get_ns) : __clobber_all);
}

/* a raw_tp program's 512-byte frame goes to a private stack (x86-64 JIT): no combined count */
SEC("raw_tp")
__naked int private_stack(void)
{
	asm volatile(
	"r1 = 42;"
	"*(u64 *)(r10 - 512) = r1;"
	"call cumulative_sub2;"
	"exit;"
	::: __clobber_all);
}

char _license[] SEC("license") = "GPL";
