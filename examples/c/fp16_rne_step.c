/* A correct C model of one fp16 accumulator step with round-to-nearest-even:
 *
 *     double fp16_rne_step(double acc, double a, double b, int *flags)
 *
 * returns fp16(acc + a*b), rounded once from the exact value, and ORs into *flags
 * 1 (inexact) and 2 (overflow to infinity). Operands whose product is exact in double
 * (at most 53 significant bits together) are assumed, as in a MAC with narrow inputs.
 *
 * The exact sum acc + p is held as hi + lo (TwoSum) and compressed to one double with
 * round-to-odd; rounding that double to fp16's 11 bits is then correct (double keeps
 * more than two extra bits). The fp16 rounding itself is integer code on the scaled
 * significand.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

static double round_to_odd_sum(double s, double p, int *inexact)
{
    double hi = s + p, bp = hi - s;
    double lo = (s - (hi - bp)) + (p - bp);
    uint64_t u;
    *inexact = lo != 0.0;
    if (lo == 0.0 || isinf(hi))
        return hi;
    memcpy(&u, &hi, sizeof u);
    if ((u & 1) == 0) /* even: step one ulp toward lo */
        u += ((lo > 0.0) == (hi > 0.0)) ? 1 : (uint64_t)-1;
    memcpy(&hi, &u, sizeof hi);
    return hi;
}

static double fp16_round_rne(double x, int *flags)
{
    double ax = fabs(x), frac, r;
    int e, qe;
    uint64_t i;
    if (isnan(x) || isinf(x) || ax == 0.0)
        return x;
    frexp(ax, &e);                 /* ax = m * 2^e, 0.5 <= m < 1 */
    qe = e - 11;                   /* quantum of an 11-bit significand ... */
    if (qe < -24)
        qe = -24;                  /* ... but never below fp16's smallest subnormal */
    r = ldexp(ax, -qe);            /* exact: only the exponent changes */
    i = (uint64_t)r;
    frac = r - (double)i;          /* exact */
    if (frac != 0.0)
        *flags |= 1;
    if (frac > 0.5 || (frac == 0.5 && (i & 1)))
        i++;
    r = ldexp((double)i, qe);
    if (r > 65504.0) {
        *flags |= 2 | 1;
        r = INFINITY;
    }
    return copysign(r, x);
}

double fp16_rne_step(double acc, double a, double b, int *flags)
{
    int inexact = 0;
    double p = a * b, v;
    if (!isfinite(acc) || !isfinite(p))
        return acc + p;
    v = round_to_odd_sum(acc, p, &inexact);
    v = fp16_round_rne(v, flags);
    if (inexact)
        *flags |= 1;
    return v;
}

/* The same rounding as a "round" model: double fp16_rne_round(double x, int *flags). */
double fp16_rne_round(double x, int *flags)
{
    return fp16_round_rne(x, flags);
}
