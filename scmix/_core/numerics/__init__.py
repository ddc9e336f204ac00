"""Numerical building blocks: jit options and the kernel cache, special functions,
shared kernels (E-step pieces, sums), quadrature over log size factors."""
