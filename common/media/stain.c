/* stain.c: Macenko's and Reinhard's stain normalization (stain.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_eigen.h>
#include <gsl/gsl_errno.h>

#include "base/base.h"
#include "media/stain.h"
#include "record/record.h"

/* ---- percentiles -------------------------------------------------------- */

/* Hoare's selection: x reordered so that x[k] is the k-th smallest, those
 * before it no larger and those after no smaller. */
static void select_kth(double *x, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = x[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] < pivot)
                i++;
            while (x[j] > pivot)
                j--;
            if (i <= j) {
                double t = x[i];
                x[i] = x[j], x[j] = t;
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

/* NumPy's np.percentile(x, q) ("linear"): between the sorted values of
 * ranks floor(r) and floor(r) + 1, r = q/100 · (n - 1).  Reorders x. */
static double percentile(double *x, size_t n, double q)
{
    double r = q / 100 * (double)(n - 1);
    size_t k = (size_t)r;
    select_kth(x, n, k);
    double low = x[k];
    if (k + 1 >= n || r == (double)k)
        return low;
    double high = x[k + 1];   /* the least of those after k */
    for (size_t i = k + 2; i < n; i++)
        high = x[i] < high ? x[i] : high;
    return low + (r - (double)k) * (high - low);
}

/* ---- Macenko ------------------------------------------------------------ */

/* od[v] = -ln((v + 1) / io), a byte's optical density */
static void od_table(double io, double od[256])
{
    for (int v = 0; v < 256; v++)
        od[v] = -log((v + 1) / io);
}

/* The stains' concentrations of an OD, least squares: c = (HEᵀ HE)⁻¹ HEᵀ od,
 * with solve the 2×3 matrix (HEᵀ HE)⁻¹ HEᵀ. */
static void solver(const double (*he)[3], double (*solve)[3])
{
    double a = 0, b = 0, d = 0;   /* HEᵀ HE = [a b; b d] */
    for (int c = 0; c < 3; c++)
        a += he[0][c] * he[0][c], b += he[0][c] * he[1][c], d += he[1][c] * he[1][c];
    double det = a * d - b * b;
    for (int c = 0; c < 3; c++) {
        solve[0][c] = (d * he[0][c] - b * he[1][c]) / det;
        solve[1][c] = (a * he[1][c] - b * he[0][c]) / det;
    }
}

/* The plane of the two largest eigenvectors of the covariance of the
 * ODs (table) of the m pixels kept
 * (first: the largest, turned to the ODs' mean; second), or -1 with a
 * message when the ODs hardly leave a line. */
static int od_plane(const double *table, const uint8_t *kept, size_t m, double first[3],
                    double second[3])
{
    double mean[3] = {0, 0, 0}, cov[9] = {0};
    for (size_t i = 0; i < m; i++)
        for (int c = 0; c < 3; c++)
            mean[c] += table[kept[3 * i + c]];
    for (int c = 0; c < 3; c++)
        mean[c] /= (double)m;
    for (size_t i = 0; i < m; i++)
        for (int r = 0; r < 3; r++)
            for (int c = r; c < 3; c++)
                cov[3 * r + c] += (table[kept[3 * i + r]] - mean[r]) *
                                  (table[kept[3 * i + c]] - mean[c]);
    for (int r = 0; r < 3; r++)
        for (int c = r; c < 3; c++)
            cov[3 * c + r] = cov[3 * r + c] /= (double)(m - 1);
    gsl_matrix_view a = gsl_matrix_view_array(cov, 3, 3);
    gsl_vector *values = gsl_vector_alloc(3);
    gsl_matrix *vectors = gsl_matrix_alloc(3, 3);
    gsl_eigen_symmv_workspace *work = gsl_eigen_symmv_alloc(3);
    int status = values && vectors && work ? gsl_eigen_symmv(&a.matrix, values, vectors, work)
                                           : GSL_ENOMEM;
    if (status == 0)
        status = gsl_eigen_symmv_sort(values, vectors, GSL_EIGEN_SORT_VAL_DESC);
    double largest = status == 0 ? gsl_vector_get(values, 0) : 0;
    double next = status == 0 ? gsl_vector_get(values, 1) : 0;
    double toward = 0;
    for (int c = 0; status == 0 && c < 3; c++) {
        first[c] = gsl_matrix_get(vectors, c, 0);
        second[c] = gsl_matrix_get(vectors, c, 1);
        toward += first[c] * mean[c];
    }
    for (int c = 0; toward < 0 && c < 3; c++)
        first[c] = -first[c];
    gsl_eigen_symmv_free(work);
    gsl_matrix_free(vectors);
    gsl_vector_free(values);
    if (status)
        return amil_fail("the covariance's eigenvectors: %s", gsl_strerror(status));
    if (!(largest > 0) || !(next > 1e-6 * largest))
        return amil_fail("not an H&E image: its optical densities lie on a line (eigenvalues "
                         "%.3g and %.3g), one stain or none", largest, next);
    return 0;
}

static int fit_macenko(const struct amil_stain_params *p, const uint8_t *rgb, size_t n,
                       const uint8_t *mask, size_t fitted, struct amil_stains *s)
{
    double table[256];
    od_table(p->io, table);
    /* the fitted pixels of OD at least beta in every channel, as bytes (3
     * a pixel, their ODs looked up), and one double a fitted pixel for
     * the percentiles: 11 bytes a pixel at most */
    uint8_t *kept = malloc(3 * fitted);
    double *values = malloc(sizeof *values * fitted);
    if (!kept || !values) {
        free(kept), free(values);
        return amil_fail("out of memory (%zu pixels)", fitted);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *px = rgb + 3 * i;
        if ((!mask || mask[i]) && table[px[0]] >= p->beta && table[px[1]] >= p->beta &&
            table[px[2]] >= p->beta)
            memcpy(kept + 3 * m++, px, 3);
    }
    int status = 0;
    double first[3] = {0}, second[3] = {0};
    if (m < AMIL_STAIN_MIN_PIXELS)
        status = amil_fail("%zu of the %zu pixels have an optical density of %g or more in "
                           "every channel; a fit needs %d", m, fitted, p->beta,
                           AMIL_STAIN_MIN_PIXELS);
    else
        status = od_plane(table, kept, m, first, second);
    if (status == 0) {
        /* each pixel's angle in the plane from the first direction; the
         * stains at the alpha-th and (100 - alpha)-th percentiles */
        for (size_t i = 0; i < m; i++) {
            const uint8_t *px = kept + 3 * i;
            double o[3] = {table[px[0]], table[px[1]], table[px[2]]};
            values[i] = atan2(o[0] * second[0] + o[1] * second[1] + o[2] * second[2],
                              o[0] * first[0] + o[1] * first[1] + o[2] * first[2]);
        }
        double low = percentile(values, m, p->alpha);
        double high = percentile(values, m, 100 - p->alpha);
        double v[2][3];
        for (int c = 0; c < 3; c++) {
            v[0][c] = first[c] * cos(low) + second[c] * sin(low);
            v[1][c] = first[c] * cos(high) + second[c] * sin(high);
        }
        int h = v[0][0] > v[1][0] ? 0 : 1;   /* hematoxylin absorbs more red */
        memcpy(s->he[0], v[h], sizeof v[h]);
        memcpy(s->he[1], v[1 - h], sizeof v[1 - h]);
        double cosine = 0;
        for (int c = 0; c < 3; c++)
            cosine += v[0][c] * v[1][c];
        if (fabs(cosine) > 1 - 1e-6)
            status = amil_fail("not an H&E image: its two stains are one colour, or opposite "
                               "ones (the angles from %.4g to %.4g)", low, high);
    }
    /* each stain's concentration in every fitted pixel, and its 99th
     * percentile */
    double solve[2][3];
    if (status == 0)
        solver(s->he, solve);
    for (int j = 0; status == 0 && j < 2; j++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *px = rgb + 3 * i;
            if (!mask || mask[i])
                values[k++] = solve[j][0] * table[px[0]] + solve[j][1] * table[px[1]] +
                              solve[j][2] * table[px[2]];
        }
        s->max_c[j] = percentile(values, fitted, 99);
        if (!(s->max_c[j] > 0))
            status = amil_fail("not an H&E image: a stain's 99th percentile concentration is "
                               "%.3g", s->max_c[j]);
    }
    free(kept), free(values);
    return status;
}

static void normalize_macenko(const struct amil_stain_params *p, const struct amil_stains *own,
                              const struct amil_stains *ref, uint8_t *rgb, size_t n)
{
    double table[256], solve[2][3];
    od_table(p->io, table);
    solver(own->he, solve);
    double scale[2] = {ref->max_c[0] / own->max_c[0], ref->max_c[1] / own->max_c[1]};
    for (size_t i = 0; i < n; i++) {
        uint8_t *px = rgb + 3 * i;
        double c[2];
        for (int j = 0; j < 2; j++)
            c[j] = scale[j] * (solve[j][0] * table[px[0]] + solve[j][1] * table[px[1]] +
                               solve[j][2] * table[px[2]]);
        for (int ch = 0; ch < 3; ch++) {
            double v = p->io * exp(-(ref->he[0][ch] * c[0] + ref->he[1][ch] * c[1]));
            px[ch] = (uint8_t)(v < 255 ? v + 0.5 : 255);
        }
    }
}

/* ---- Reinhard ----------------------------------------------------------- */

/* sRGB's primaries under D65 (IEC 61966-2-1), linear RGB to XYZ */
static const double xyz_of_rgb[3][3] = {{0.4124564, 0.3575761, 0.1804375},
                                        {0.2126729, 0.7151522, 0.0721750},
                                        {0.0193339, 0.1191920, 0.9503041}};
static const double white[3] = {0.95047, 1.0, 1.08883};   /* D65's XYZ */

static double lab_f(double t)
{
    const double d = 6.0 / 29;
    return t > d * d * d ? cbrt(t) : t / (3 * d * d) + 4.0 / 29;
}

static double lab_f_inverse(double f)
{
    const double d = 6.0 / 29;
    return f > d ? f * f * f : 3 * d * d * (f - 4.0 / 29);
}

/* A byte's sRGB value, linearized: the table of the 256 */
static const double *linear_table(void)
{
    static double table[256];
    static int ready;
    for (int v = 0; !ready && v < 256; v++) {
        double c = v / 255.0;
        table[v] = c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
        ready = v == 255;
    }
    return table;
}

/* The byte of a linear value c: sRGB's encoding, clipped to 0..1 and
 * rounded.  The encoding increases, so the byte is the last k whose lower
 * edge, (k - 0.5)/255 decoded, c reaches; a table of BINS bins of c holds
 * the byte at each bin's start, and a bin spans less than one byte's
 * width (the encoding's slope is at most 12.92), so a step or two up
 * from it finds the byte: no pow a pixel. */
#define BINS 4096
static uint8_t byte_of_linear(double c)
{
    static double edge[257];          /* edge[k]: the least c that rounds to k */
    static uint8_t start[BINS + 1];   /* the byte of c = bin / BINS */
    static int ready;
    if (!ready) {
        edge[0] = -INFINITY, edge[256] = INFINITY;
        for (int k = 1; k < 256; k++) {
            double e = (k - 0.5) / 255;
            edge[k] = e <= 0.04045 ? e / 12.92 : pow((e + 0.055) / 1.055, 2.4);
        }
        for (int b = 0, v = 0; b <= BINS; b++) {
            while ((double)b / BINS >= edge[v + 1])
                v++;
            start[b] = (uint8_t)v;
        }
        ready = 1;
    }
    if (!(c > 0))
        return 0;
    if (c >= 1)
        return 255;
    int v = start[(int)(c * BINS)];
    while (c >= edge[v + 1])
        v++;
    return (uint8_t)v;
}

void amil_rgb_to_lab(const uint8_t rgb[3], double lab[3])
{
    const double *table = linear_table();
    double lin[3] = {table[rgb[0]], table[rgb[1]], table[rgb[2]]}, f[3];
    for (int r = 0; r < 3; r++)
        f[r] = lab_f((xyz_of_rgb[r][0] * lin[0] + xyz_of_rgb[r][1] * lin[1] +
                      xyz_of_rgb[r][2] * lin[2]) / white[r]);
    lab[0] = 116 * f[1] - 16;
    lab[1] = 500 * (f[0] - f[1]);
    lab[2] = 200 * (f[1] - f[2]);
}

void amil_inverse3(const double (*m)[3], double (*inv)[3])
{
    double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
                 m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                 m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) {
            int r1 = (c + 1) % 3, r2 = (c + 2) % 3, c1 = (r + 1) % 3, c2 = (r + 2) % 3;
            inv[r][c] = (m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]) / det;
        }
}

void amil_lab_to_rgb(const double lab[3], uint8_t rgb[3])
{
    static double inv[3][3];
    static int ready;
    if (!ready)
        amil_inverse3(xyz_of_rgb, inv), ready = 1;
    double fy = (lab[0] + 16) / 116, f[3] = {fy + lab[1] / 500, fy, fy - lab[2] / 200}, xyz[3];
    for (int c = 0; c < 3; c++)
        xyz[c] = white[c] * lab_f_inverse(f[c]);
    for (int r = 0; r < 3; r++)
        rgb[r] = byte_of_linear(inv[r][0] * xyz[0] + inv[r][1] * xyz[1] + inv[r][2] * xyz[2]);
}

static int fit_reinhard(const uint8_t *rgb, size_t n, const uint8_t *mask, size_t fitted,
                        struct amil_stains *s)
{
    /* the means, then the deviations from them: two passes, in double */
    double sum[3] = {0, 0, 0}, squares[3] = {0, 0, 0}, lab[3];
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i])
            continue;
        amil_rgb_to_lab(rgb + 3 * i, lab);
        for (int c = 0; c < 3; c++)
            sum[c] += lab[c];
    }
    for (int c = 0; c < 3; c++)
        s->mean[c] = sum[c] / (double)fitted;
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i])
            continue;
        amil_rgb_to_lab(rgb + 3 * i, lab);
        for (int c = 0; c < 3; c++)
            squares[c] += (lab[c] - s->mean[c]) * (lab[c] - s->mean[c]);
    }
    for (int c = 0; c < 3; c++) {
        s->sd[c] = sqrt(squares[c] / (double)fitted);
        if (!(s->sd[c] > 1e-6))
            return amil_fail("one colour: its L*a*b* channel %s does not vary",
                             (const char *[]){"L*", "a*", "b*"}[c]);
    }
    return 0;
}

static void normalize_reinhard(const struct amil_stains *own, const struct amil_stains *ref,
                               uint8_t *rgb, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double lab[3];
        amil_rgb_to_lab(rgb + 3 * i, lab);
        for (int c = 0; c < 3; c++)
            lab[c] = (lab[c] - own->mean[c]) * (ref->sd[c] / own->sd[c]) + ref->mean[c];
        amil_lab_to_rgb(lab, rgb + 3 * i);
    }
}

/* ---- the interface ------------------------------------------------------ */

int amil_stain_fit(enum amil_stain_method method, const struct amil_stain_params *p,
                   const uint8_t *rgb, size_t n, const uint8_t *mask, struct amil_stains *s)
{
    memset(s, 0, sizeof *s);
    s->method = method;
    size_t fitted = n;
    if (mask)
        for (size_t i = fitted = 0; i < n; i++)
            fitted += mask[i] != 0;
    if (fitted < AMIL_STAIN_MIN_PIXELS)
        return amil_fail("%zu pixels to fit on; a fit needs %d", fitted, AMIL_STAIN_MIN_PIXELS);
    return method == AMIL_STAIN_MACENKO ? fit_macenko(p, rgb, n, mask, fitted, s)
                                        : fit_reinhard(rgb, n, mask, fitted, s);
}

void amil_stain_normalize(const struct amil_stain_params *p, const struct amil_stains *own,
                          const struct amil_stains *ref, uint8_t *rgb, size_t n)
{
    if (ref->method == AMIL_STAIN_MACENKO)
        normalize_macenko(p, own, ref, rgb, n);
    else
        normalize_reinhard(own, ref, rgb, n);
}

static const char *const method_names[] = {"macenko", "reinhard"};

void amil_stains_to_record(const struct amil_stains *s, const struct amil_stain_params *p,
                           struct amil_record *r)
{
    amil_record_set_meta(r, "kind", "stains");
    amil_record_set_meta(r, "method", method_names[s->method]);
    if (s->method == AMIL_STAIN_MACENKO) {
        amil_record_set_metaf(r, "io", "%.15g", p->io);
        amil_record_set_metaf(r, "alpha", "%.15g", p->alpha);
        amil_record_set_metaf(r, "beta", "%.15g", p->beta);
        int64_t shape[2] = {2, 3};
        float *he = amil_record_put(r, "stains", AMIL_F32, 2, shape)->data;
        float *max_c = amil_record_put(r, "max_concentrations", AMIL_F32, 1, shape)->data;
        for (int j = 0; j < 2; j++) {
            for (int c = 0; c < 3; c++)
                he[3 * j + c] = (float)s->he[j][c];
            max_c[j] = (float)s->max_c[j];
        }
    } else {
        int64_t shape[1] = {3};
        float *mean = amil_record_put(r, "lab_mean", AMIL_F32, 1, shape)->data;
        float *sd = amil_record_put(r, "lab_sd", AMIL_F32, 1, shape)->data;
        for (int c = 0; c < 3; c++)
            mean[c] = (float)s->mean[c], sd[c] = (float)s->sd[c];
    }
}

/* Tensor name, F32 of count values (shape [rows, count / rows]), each
 * finite and within [low, high], into to. */
static int values_of(const struct amil_record *r, const char *name, int rows, int count,
                     double low, double high, double *to)
{
    const struct amil_tensor *t = amil_record_expect(r, name, AMIL_F32, rows > 1 ? 2 : 1);
    if (!t)
        return -1;
    if (rows > 1 ? t->shape[0] != rows || t->shape[1] != count / rows
                 : t->shape[0] != count)
        return amil_fail("tensor '%s' is not F32 [%s%d]", name, rows > 1 ? "2, " : "",
                         rows > 1 ? count / rows : count);
    for (int i = 0; i < count; i++) {
        double v = ((const float *)t->data)[i];
        if (!(v >= low && v <= high))
            return amil_fail("tensor '%s': value %d is %g, not in [%g, %g]", name, i, v, low,
                             high);
        to[i] = v;
    }
    return 0;
}

static int param_of(const struct amil_record *r, const char *key, double low, double high,
                    double *to)
{
    const char *text = amil_record_meta(r, key);
    if (!text)
        return amil_fail("no metadata %s", key);
    char where[96];
    snprintf(where, sizeof where, "metadata %s", key);
    if (amil_parse_double(text, low, high, to) < 0)
        return amil_fail_in(where);
    return 0;
}

int amil_stains_from_record(const struct amil_record *r, struct amil_stains *s,
                            struct amil_stain_params *p)
{
    memset(s, 0, sizeof *s);
    const char *kind = amil_record_meta(r, "kind");
    if (!kind || strcmp(kind, "stains") != 0)
        return amil_fail("a record of kind '%s', not stains (stainnorm --save-stains)",
                         kind ? kind : "none");
    const char *method = amil_record_meta(r, "method");
    if (!method || (strcmp(method, "macenko") != 0 && strcmp(method, "reinhard") != 0))
        return amil_fail("method '%s' is not macenko or reinhard", method ? method : "none");
    s->method = strcmp(method, "macenko") == 0 ? AMIL_STAIN_MACENKO : AMIL_STAIN_REINHARD;
    if (s->method == AMIL_STAIN_REINHARD)
        return values_of(r, "lab_mean", 1, 3, -500, 500, s->mean) < 0 ||
                       values_of(r, "lab_sd", 1, 3, 1e-30, 500, s->sd) < 0
                   ? -1
                   : 0;
    double he[6];
    if (param_of(r, "io", 1, 255, &p->io) < 0 || param_of(r, "alpha", 0, 50, &p->alpha) < 0 ||
        param_of(r, "beta", 0, 5, &p->beta) < 0 ||
        values_of(r, "stains", 2, 6, -1, 1, he) < 0 ||
        values_of(r, "max_concentrations", 1, 2, 1e-30, 1e6, s->max_c) < 0)
        return -1;
    for (int j = 0; j < 2; j++) {
        double norm = 0;
        for (int c = 0; c < 3; c++)
            norm += he[3 * j + c] * he[3 * j + c], s->he[j][c] = he[3 * j + c];
        if (fabs(norm - 1) > 1e-3)
            return amil_fail("stain %d is not a unit vector (its length is %g)", j, sqrt(norm));
    }
    double cosine = 0;
    for (int c = 0; c < 3; c++)
        cosine += s->he[0][c] * s->he[1][c];
    if (fabs(cosine) > 1 - 1e-6)
        return amil_fail("the two stains are one colour, or opposite ones");
    return 0;
}
