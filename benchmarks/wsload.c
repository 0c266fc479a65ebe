/*
 * The load client's receive loop in C (loaded with ctypes by benchmarks/loadclient.py
 * when run with --engine c), so that one core of clients keeps up with one core of
 * server. Connecting, the handshake and the control protocol stay in Python; once a
 * connection is open its fd is handed over here and this code reads it: it parses the
 * (unmasked) server frames, answers pings, counts `gap` messages, and for every
 * benchmark message (a text frame holding the marker "bm:RRRR:SSSSSS:UUUU...") records
 * the time epoll reported the socket readable and the planned send time in the marker.
 *
 * Same semantics as the Python engine (LoadClient._frames); not thread-safe; one
 * instance per process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SCRATCH (512 * 1024)
#define MAX_EVENTS 4096
#define MARK_RUN 4
#define MARK_SEQ 9
#define MARK_US 16
#define MARK_END 32

enum { FREE = 0, READING = 1, GONE = 2 };

typedef struct {
    int32_t state;
    int32_t left_len;
    int32_t left_cap;
    char *left;
    int64_t received;
    int64_t last_seq;
    int64_t disorder;
    int64_t gaps;
    /* resume tracking (benchmarks/storm.py): the next sequence number expected, the
       numbers skipped and received twice, when the connection opened, when it had
       everything published before it connected (the `welcome` names that offset) */
    int32_t track;
    int64_t expect;
    int64_t holes;
    int64_t dups;
    double opened_at;
    double resumed_at;
    int64_t base; /* offset of sequence number 0, minus 1 */
    int64_t head; /* the last sequence number published when it connected; -1: unknown */
} conn_t;

static int epfd = -1;
static int max_fd = 0;
static conn_t *conns = NULL;
static char scratch[SCRATCH];
static char tag[4] = {'-', '-', '-', '-'};
static int in_run = 0;
static long moff = 0;
static int64_t expected = 0;
static int64_t closed_during_run = 0, closed_received = 0, closed_lost = 0;
static double *times = NULL;
static int64_t *planned = NULL;
static int64_t nlat = 0, cap_lat = 0;

int wl_init(int fd_limit) {
    epfd = epoll_create1(EPOLL_CLOEXEC);
    max_fd = fd_limit;
    conns = calloc((size_t)fd_limit, sizeof(conn_t));
    return (epfd >= 0 && conns != NULL) ? epfd : -1;
}

static void reset(conn_t *c) {
    c->received = 0;
    c->last_seq = -1;
    c->disorder = 0;
    c->gaps = 0;
}

/* Take over an open connection; *data* are bytes already read after the handshake. */
int wl_add(int fd, const char *data, int len) {
    if (fd < 0 || fd >= max_fd || len < 0 || len > SCRATCH / 2) return -1;
    conn_t *c = &conns[fd];
    reset(c);
    c->track = 0;
    c->state = READING;
    if (len > c->left_cap) {
        char *p = realloc(c->left, (size_t)len);
        if (!p) return -1;
        c->left = p;
        c->left_cap = len;
    }
    if (len) memcpy(c->left, data, (size_t)len);
    c->left_len = len;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Stop reading *fd* (before Python closes it). */
void wl_remove(int fd) {
    if (fd < 0 || fd >= max_fd) return;
    conn_t *c = &conns[fd];
    if (c->state == READING) epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    c->state = FREE;
    c->left_len = 0;
}

static void gone(int fd) {
    conn_t *c = &conns[fd];
    if (c->state != READING) return;
    if (in_run) {
        closed_during_run++;
        closed_received += c->received;
        if (expected > c->received) closed_lost += expected - c->received;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    c->state = GONE;
    c->left_len = 0;
}

static int64_t digits(const char *p, int n) {
    int64_t v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + (p[i] - '0');
    return v;
}

static void text(conn_t *c, const char *p, size_t ln, double now) {
    const char *m = NULL;
    if ((size_t)moff + MARK_END <= ln && memcmp(p + moff, "\"bm:", 4) == 0) {
        m = p + moff;
    } else {
        m = memmem(p, ln, "\"bm:", 4);
        if (m) moff = m - p;
    }
    if (m) {
        if (!in_run || (size_t)(m - p) + MARK_END > ln || memcmp(m + MARK_RUN, tag, 4) != 0)
            return;
        int64_t seq = digits(m + MARK_SEQ, 6);
        int64_t planned_us = digits(m + MARK_US, 16);
        if (seq <= c->last_seq) c->disorder++;
        c->last_seq = seq;
        c->received++;
        if (c->track) {
            if (seq == c->expect) {
                c->expect++;
            } else if (seq < c->expect) {
                c->dups++;
            } else {
                c->holes += seq - c->expect;
                c->expect = seq + 1;
            }
            if (c->resumed_at == 0 && c->head >= 0 && c->expect > c->head) c->resumed_at = now;
        }
        if (nlat == cap_lat) {
            int64_t cap = cap_lat ? cap_lat * 2 : 1 << 16;
            double *t = realloc(times, (size_t)cap * sizeof(double));
            if (!t) return;
            times = t;
            int64_t *q = realloc(planned, (size_t)cap * sizeof(int64_t));
            if (!q) return;
            planned = q;
            cap_lat = cap;
        }
        times[nlat] = now;
        planned[nlat] = planned_us;
        nlat++;
    } else if (c->track && c->resumed_at == 0 && ln > 17 && memcmp(p, "{\"type\":\"welcome\"", 17) == 0) {
        /* the stream's offset when this client connected: what it must have first */
        const char *o = memmem(p, ln, "\"offsets\":", 10);
        const char *t = o ? memmem(o, ln - (size_t)(o - p), "\"topics\":", 9) : NULL;
        if (t) {
            t += 9;
            int64_t offset = 0;
            while (t < p + ln && *t >= '0' && *t <= '9') offset = offset * 10 + (*t++ - '0');
            c->head = offset - c->base - 1;
            if (c->expect > c->head) c->resumed_at = now;
        }
    } else if (memmem(p, ln, "\"type\":\"gap\"", 12)) {
        c->gaps++;
    }
}

static void frames(int fd, size_t n, double now);

static void readable(int fd, double now) {
    conn_t *c = &conns[fd];
    if (c->state != READING) return;
    size_t off = (size_t)c->left_len;
    if (off) memcpy(scratch, c->left, off);
    ssize_t r = recv(fd, scratch + off, SCRATCH - off, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        gone(fd);
        return;
    }
    if (r == 0) {
        gone(fd);
        return;
    }
    frames(fd, off + (size_t)r, now);
}

/* Parse the *n* bytes in scratch (fd's leftover first); keep a partial frame. */
static void frames(int fd, size_t n, double now) {
    conn_t *c = &conns[fd];
    size_t pos = 0;
    while (n - pos >= 2) {
        const unsigned char *b = (const unsigned char *)scratch + pos;
        uint64_t ln = b[1] & 0x7f;
        size_t h;
        if (ln < 126) {
            h = pos + 2;
        } else if (ln == 126) {
            if (n - pos < 4) break;
            ln = ((uint64_t)b[2] << 8) | b[3];
            h = pos + 4;
        } else {
            if (n - pos < 10) break;
            ln = 0;
            for (int i = 2; i < 10; i++) ln = (ln << 8) | b[i];
            h = pos + 10;
        }
        if (ln > SCRATCH / 2) { /* not a frame this benchmark sends */
            gone(fd);
            return;
        }
        if (h + ln > n) break;
        int op = b[0] & 0x0f;
        if (op == 1) {
            text(c, scratch + h, (size_t)ln, now);
        } else if (op == 9 && ln <= 125) { /* ping: masked pong, mask key 0 */
            char pong[6 + 125];
            pong[0] = (char)0x8a;
            pong[1] = (char)(0x80 | ln);
            memset(pong + 2, 0, 4);
            memcpy(pong + 6, scratch + h, (size_t)ln);
            (void)send(fd, pong, 6 + (size_t)ln, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else if (op == 8) {
            gone(fd);
            return;
        }
        pos = h + (size_t)ln;
    }
    size_t left = n - pos;
    if (left > (size_t)c->left_cap) {
        char *p = realloc(c->left, left);
        if (!p) {
            gone(fd);
            return;
        }
        c->left = p;
        c->left_cap = (int32_t)left;
    }
    if (left) memmove(c->left, scratch + pos, left);
    c->left_len = (int32_t)left;
}

/* Read every ready connection; returns the number of events handled. */
long wl_pump(int max_rounds) {
    struct epoll_event evs[MAX_EVENTS];
    long handled = 0;
    for (int round = 0; round < max_rounds; round++) {
        int k = epoll_wait(epfd, evs, MAX_EVENTS, 0);
        if (k <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        for (int i = 0; i < k; i++) readable(evs[i].data.fd, now);
        handled += k;
    }
    return handled;
}

void wl_begin(const char *run_tag, int64_t exp) {
    memcpy(tag, run_tag, 4);
    in_run = 1;
    expected = exp;
    closed_during_run = closed_received = closed_lost = 0;
    nlat = 0;
    for (int fd = 0; fd < max_fd; fd++)
        if (conns[fd].state == READING) reset(&conns[fd]);
}

void wl_end(void) {
    in_run = 0;
    memcpy(tag, "----", 4);
}

/* out: received, complete, reading, closed, lost, lost_clients, gaps, disorder, nlat */
void wl_totals(int64_t *out) {
    int64_t received = closed_received, complete = 0, reading = 0, lost = closed_lost;
    int64_t lost_clients = closed_lost ? closed_during_run : 0, gaps = 0, disorder = 0;
    for (int fd = 0; fd < max_fd; fd++) {
        conn_t *c = &conns[fd];
        if (c->state == FREE) continue;
        gaps += c->gaps;
        disorder += c->disorder;
        if (c->state != READING) continue;
        reading++;
        received += c->received;
        if (c->received >= expected) {
            complete++;
        } else {
            lost += expected - c->received;
            lost_clients++;
        }
    }
    out[0] = received;
    out[1] = complete;
    out[2] = reading;
    out[3] = closed_during_run;
    out[4] = lost;
    out[5] = lost_clients;
    out[6] = gaps;
    out[7] = disorder;
    out[8] = nlat;
}

/* Latencies (receive time - planned send time, seconds) of the run so far into *dst*. */
void wl_latencies(double *dst) {
    for (int64_t i = 0; i < nlat; i++) dst[i] = times[i] - (double)planned[i] * 1e-6;
}

/* Follow *fd*'s sequence from *expect* on; it opened at *opened_at* (CLOCK_MONOTONIC s).
   With *base* >= 0 its `welcome` says (offset - base - 1) what it must have to have
   resumed; with -1 it has resumed once open (a server with nothing to replay). Then
   parse what arrived with the handshake. */
void wl_track(int fd, int64_t expect, double opened_at, int64_t base) {
    if (fd < 0 || fd >= max_fd) return;
    conn_t *c = &conns[fd];
    c->track = 1;
    c->expect = expect;
    c->holes = 0;
    c->dups = 0;
    c->opened_at = opened_at;
    c->base = base;
    c->head = -1;
    c->resumed_at = base < 0 ? opened_at : 0;
    if (c->state == READING && c->left_len > 0) {
        size_t n = (size_t)c->left_len;
        memcpy(scratch, c->left, n);
        c->left_len = 0;
        frames(fd, n, opened_at);
    }
}

/* out: expect, holes, dups, resumed_at of one tracked connection */
void wl_tracked(int fd, double *out) {
    conn_t *c = &conns[fd];
    out[0] = (double)c->expect;
    out[1] = (double)c->holes;
    out[2] = (double)c->dups;
    out[3] = c->resumed_at;
}

/* out: tracked reading connections, resumed ones, latest resume time, holes, dups */
void wl_track_totals(double *out) {
    double tracked = 0, resumed = 0, last = 0, holes = 0, dups = 0;
    for (int fd = 0; fd < max_fd; fd++) {
        conn_t *c = &conns[fd];
        if (c->state != READING || !c->track) continue;
        tracked++;
        holes += (double)c->holes;
        dups += (double)c->dups;
        if (c->resumed_at > 0) {
            resumed++;
            if (c->resumed_at > last) last = c->resumed_at;
        }
    }
    out[0] = tracked;
    out[1] = resumed;
    out[2] = last;
    out[3] = holes;
    out[4] = dups;
}
