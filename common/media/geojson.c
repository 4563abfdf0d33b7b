/* geojson.c: patches as GeoJSON (geojson.h). */
#include <string.h>

#include "base/base.h"
#include "media/geojson.h"

/* s as a JSON string, escaped */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* One patch: its square (closed, counter-clockwise in the image's y-down
 * frame as QuPath draws it) and its measurements. */
static void feature(FILE *f, const struct amil_geojson *g, long i, int first)
{
    double y = g->coords[2 * i], x = g->coords[2 * i + 1], s = g->side;
    fprintf(f, "%s\n{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
            "[[[%.17g,%.17g],[%.17g,%.17g],[%.17g,%.17g],[%.17g,%.17g],[%.17g,%.17g]]]},",
            first ? "" : ",", x, y, x + s, y, x + s, y + s, x, y + s, x, y);
    fprintf(f, "\"properties\":{\"objectType\":\"detection\",\"name\":\"patch %ld\","
            "\"measurements\":{", i);
    for (int k = 0; k < g->branches; k++) {
        if (g->branches == 1)
            fprintf(f, "\"attention\":%.9g", (double)g->attention[i]);
        else
            fprintf(f, "%s\"attention %d\":%.9g", k ? "," : "", k,
                    (double)g->attention[(size_t)k * g->n + i]);
    }
    for (int c = 0; c < g->classes; c++)
        fprintf(f, ",\"prob %d\":%.9g", c, (double)g->prob[c]);
    if (g->classes)
        fprintf(f, ",\"predicted\":%ld", g->predicted);
    fputs("}}}", f);
}

int amil_geojson_write(FILE *f, const struct amil_geojson *g, const unsigned char *keep)
{
    fputs("{\"type\":\"FeatureCollection\",", f);
    if (g->source) {
        fputs("\"source\":", f);
        json_string(f, g->source);
        fputc(',', f);
    }
    fputs("\"features\":[", f);
    int first = 1;
    for (long i = 0; i < g->n; i++)
        if (!keep || keep[i]) {
            feature(f, g, i, first);
            first = 0;
        }
    fputs("\n]}\n", f);
    return ferror(f) ? amil_fail("write error") : 0;
}
