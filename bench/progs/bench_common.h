/* Shared by the JIT benchmark programs: XDP programs reading a 128-byte packet.
 *
 * Every program reads ctx->data and ctx->data_end first thing (r1 is the ctx), so the
 * benchmark can run the raw instructions on pybpf with a minimal ctx before the verifier's
 * ctx rewriting is wired in (see bench/jit.py).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define PKT_LEN 128

#define PKT_PROLOGUE(ctx)                                    \
	unsigned char *data = (void *)(long)(ctx)->data;         \
	unsigned char *data_end = (void *)(long)(ctx)->data_end; \
	if (data + PKT_LEN > data_end)                           \
		return XDP_ABORTED;

static __always_inline unsigned long long load64(const unsigned char *p)
{
	return *(const unsigned long long *)p;
}
