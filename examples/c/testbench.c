/* A small C testbench against accsim's golden model (libaccsim.so).
 *
 *   accsim capi build --out build
 *   cc -I build testbench.c -L build -laccsim -Wl,-rpath,build -o testbench
 *   ./testbench < cases.txt
 *
 * Reads commands from stdin, one a line, and prints one result line each:
 *
 *   round FORMAT MODE X            -> "round <hex result> <flags>"
 *   step FORMAT MODE ACC A B       -> "step <hex result> <flags>"
 *   dot ACCEL|FORMAT STRUCT N A1 B1 ... AN BN   (STRUCT "-": the default)
 *                                  -> "dot <hex result> <flags>"
 *   badformat NAME                 -> "error <message>" (expected to fail)
 *
 * Numbers are read with strtod (hex floats such as 0x1.8p-3 are exact); results are
 * printed with %a, so the caller compares bits, not decimals. A format or accelerator
 * handle is loaded once per name and released at exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accsim.h"

#define MAXN 256

/* the next token, "" (0.0 as a number) when the line ends early */
static const char *next_word(void)
{
    const char *t = strtok(NULL, " \t\n");
    return t ? t : "";
}

static double next_number(void)
{
    return strtod(next_word(), NULL);
}

/* handles are loaded once per name and released at exit */
#define MAXH 32
static char names[MAXH][256];
static int handles[MAXH], nhandles;

static int load(const char *name)
{
    int i, h;
    for (i = 0; i < nhandles; i++)
        if (strcmp(names[i], name) == 0)
            return handles[i];
    h = accsim_load_format(name);
    if (h < 0)
        h = accsim_load_accelerator(name);
    if (h >= 0 && nhandles < MAXH && strlen(name) < sizeof names[0]) {
        strcpy(names[nhandles], name);
        handles[nhandles++] = h;
    }
    return h;
}

static void print_result(const char *what, int rc, double v, int flags)
{
    if (rc != 0)
        printf("error %s\n", accsim_last_error());
    else
        printf("%s %a %d\n", what, v, flags);
}

int main(void)
{
    static char line[1 << 16];
    while (fgets(line, sizeof line, stdin)) {
        char *cmd = strtok(line, " \t\n");
        double v = 0.0;
        int flags = 0, rc, h;
        if (!cmd)
            continue;
        if (strcmp(cmd, "badformat") == 0) {
            h = accsim_load_format(next_word());
            if (h < 0)
                printf("error %s\n", accsim_last_error());
            else
                printf("handle %d\n", h);
            continue;
        }
        h = load(next_word());
        if (h < 0) {
            printf("error %s\n", accsim_last_error());
            continue;
        }
        if (strcmp(cmd, "round") == 0) {
            const char *mode = next_word();
            double x = next_number();
            rc = accsim_round(h, mode, x, &v, &flags);
            print_result("round", rc, v, flags);
        } else if (strcmp(cmd, "step") == 0) {
            const char *mode = next_word();
            double acc = next_number();
            double a = next_number();
            double b = next_number();
            rc = accsim_step(h, mode, acc, a, b, &v, &flags);
            print_result("step", rc, v, flags);
        } else if (strcmp(cmd, "dot") == 0) {
            double a[MAXN], b[MAXN];
            const char *st = next_word();
            int n = atoi(next_word()), k;
            if (n > MAXN)
                n = MAXN;
            for (k = 0; k < n; k++) {
                a[k] = next_number();
                b[k] = next_number();
            }
            rc = accsim_dot(h, strcmp(st, "-") ? st : NULL, NULL, n, a, b, NULL, &v, &flags);
            print_result("dot", rc, v, flags);
        } else {
            printf("error unknown command %s\n", cmd);
        }
        fflush(stdout);
    }
    while (nhandles > 0)
        if (accsim_release(handles[--nhandles]) != 0)
            printf("error %s\n", accsim_last_error());
    return 0;
}
