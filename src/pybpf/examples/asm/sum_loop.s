# Sum of 1..1000 with a bounded loop (kernel/LLVM pseudo-C syntax).
# expect: 500500
r0 = 0
r1 = 1
loop:
r0 += r1
r1 += 1
if r1 <= 1000 goto loop
exit
