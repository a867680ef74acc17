# Linux semantics of division by zero: x / 0 = 0 and x % 0 = x (kernel syntax).
# expect: 7
r0 = 10
r1 = 0
r0 /= r1
r2 = 7
r2 %= r1
r0 += r2
exit
