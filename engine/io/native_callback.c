/* The live stream's audio callback in C: it never takes Python's interpreter lock.
 *
 * The Python callbacks (engine/io/callbacks.py) must take the interpreter lock each period, and
 * wait for it while the worker holds it; on a busy or virtual machine that wait is an underflow.
 * This one does the same work on the same memory with no Python at all: it copies the device's
 * input into the input ring, the output ring into the device's output, and bumps the same
 * counters. The rings' audio and positions live in numpy arrays that Python owns (ringbuffer.py,
 * callbacks.py: the *_FIELD indices below are theirs); Python's RingBuffer stays the reference
 * implementation and tests/test_native_callback.py checks that both give the same results.
 *
 * NB: each position has one writer. The callback publishes its own with a release store after its
 * copy, and reads the worker's with an acquire load before its copy. The worker (Python) stores
 * its positions with plain stores, ordered after its copy on x86-64 (total store order); other
 * processors are not tested here.
 */

#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(_WIN32)
#include <windows.h>
#if defined(_MSC_VER)
#include <intrin.h> /* _ReadWriteBarrier */
#endif
#elif defined(__APPLE__)
#include <pthread.h>
#else
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LOAD_ACQUIRE(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define FENCE_RELEASE() __atomic_thread_fence(__ATOMIC_RELEASE)
#else /* MSVC on x86-64: aligned 64-bit accesses are atomic; stop the compiler reordering them */
#define LOAD_ACQUIRE(p) (_ReadWriteBarrier(), *(volatile int64_t *)(p))
#define STORE_RELEASE(p, v) do { _ReadWriteBarrier(); *(volatile int64_t *)(p) = (v); } while (0)
#define FENCE_RELEASE() _ReadWriteBarrier()
#endif

/* RingBuffer.state (engine/ringbuffer.py) */
enum { WRITTEN = 0, READ = 1, DROPPED = 2, UNDERFLOW_FRAMES = 3, UNDERFLOW_EVENTS = 4, WRITING = 6 };
/* CallbackCounters.state (engine/io/callbacks.py) */
enum { INPUT_CALLBACKS = 0, OUTPUT_CALLBACKS = 1, DEVICE_XRUNS = 2, MAX_FRAMES = 4,
       INPUT_THREAD_ID = 5, OUTPUT_THREAD_ID = 6 };

struct av_ring {
    float *buf;      /* capacity * channels, interleaved */
    int64_t *state;  /* RingBuffer.state */
    int64_t capacity;
    int64_t channels;
};

struct av_sides {
    struct av_ring in;   /* buf NULL: no input side */
    struct av_ring out;  /* buf NULL: no output side; mono, copied to every device channel */
    int64_t out_channels;  /* the device output buffer's channels (the input's are the ring's) */
    int64_t *counters;   /* CallbackCounters.state */
    double *arrival_s;   /* CallbackCounters.arrival_s */
    int64_t *arrival_written;
    int64_t arrivals;    /* their length */
};

static double monotonic_s(void)
{ /* the clock Python's time.monotonic() reads on each system */
#if defined(_WIN32)
    LARGE_INTEGER now, freq;
    QueryPerformanceCounter(&now);
    QueryPerformanceFrequency(&freq);
    return (double)now.QuadPart / (double)freq.QuadPart;
#elif defined(__APPLE__)
    return (double)clock_gettime_nsec_np(CLOCK_UPTIME_RAW) * 1e-9;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
}

static int64_t thread_id(void)
{ /* what Python's threading.get_native_id() returns */
#if defined(_WIN32)
    return (int64_t)GetCurrentThreadId();
#elif defined(__APPLE__)
    uint64_t tid = 0;
    pthread_threadid_np(NULL, &tid);
    return (int64_t)tid;
#else
    return (int64_t)syscall(SYS_gettid);
#endif
}

static void note_callback(struct av_sides *s, int64_t tid_field, unsigned long frames, unsigned long status)
{
    int64_t *c = s->counters;
    if (!c[tid_field]) c[tid_field] = thread_id();
    if (status) c[DEVICE_XRUNS] += 1;
    if ((int64_t)frames > c[MAX_FRAMES]) c[MAX_FRAMES] = (int64_t)frames;
}

/* RingBuffer.write_overwrite: never refuses; the oldest frames go when the reader is behind. */
static void ring_write_overwrite(struct av_ring *r, const float *data, int64_t n)
{
    int64_t written = r->state[WRITTEN];  /* ours alone */
    if (n > r->capacity) {
        data += (n - r->capacity) * r->channels;
        written += n - r->capacity;
        n = r->capacity;
    }
    /* Claim the frames first: a reader that copied some of them sees the claim after its copy. */
    r->state[WRITING] = written + n;
    FENCE_RELEASE();
    int64_t start = written % r->capacity;
    int64_t first = n < r->capacity - start ? n : r->capacity - start;
    size_t frame_bytes = sizeof(float) * (size_t)r->channels;
    memcpy(r->buf + start * r->channels, data, (size_t)first * frame_bytes);
    if (first < n) memcpy(r->buf, data + first * r->channels, (size_t)(n - first) * frame_bytes);
    STORE_RELEASE(&r->state[WRITTEN], written + n);
}

/* RingBuffer.read_into for a mono ring into a device buffer of ``channels`` interleaved channels:
 * the whole buffer is filled, zeros for what is missing (counted as underflow). */
static int64_t ring_read_into(struct av_ring *r, float *out, int64_t n, int64_t channels)
{
    int64_t written = LOAD_ACQUIRE(&r->state[WRITTEN]);
    int64_t read = r->state[READ];  /* ours alone */
    if (written - read > r->capacity) {  /* lapped: skip to the oldest frame still intact */
        r->state[DROPPED] += written - read - r->capacity;
        read = written - r->capacity;
    }
    int64_t avail = written - read < n ? written - read : n;
    for (int64_t i = 0; i < avail; i++) {
        float v = r->buf[((read + i) % r->capacity) * r->channels];
        for (int64_t ch = 0; ch < channels; ch++) out[i * channels + ch] = v;
    }
    if (avail < n) {
        memset(out + avail * channels, 0, sizeof(float) * (size_t)((n - avail) * channels));
        r->state[UNDERFLOW_FRAMES] += n - avail;
        r->state[UNDERFLOW_EVENTS] += 1;
    }
    STORE_RELEASE(&r->state[READ], read + avail);
    return avail;
}

/* PortAudio's PaStreamCallback (the time info is not used). Input side as InputSide.__call__,
 * output side as OutputSide.__call__, both for a duplex stream. */
int av_callback(const void *input, void *output, unsigned long frames, const void *time_info,
                unsigned long status, void *user)
{
    struct av_sides *s = (struct av_sides *)user;
    (void)time_info;
    if (s->in.buf && input) {
        note_callback(s, INPUT_THREAD_ID, frames, status);
        ring_write_overwrite(&s->in, (const float *)input, (int64_t)frames);
        int64_t k = s->counters[INPUT_CALLBACKS];
        s->arrival_s[k % s->arrivals] = monotonic_s();
        s->arrival_written[k % s->arrivals] = s->in.state[WRITTEN];
        STORE_RELEASE(&s->counters[INPUT_CALLBACKS], k + 1);
    }
    if (s->out.buf && output) {
        /* a duplex callback's status was counted once, on the input side */
        note_callback(s, OUTPUT_THREAD_ID, frames, s->in.buf && input ? 0 : status);
        ring_read_into(&s->out, (float *)output, (int64_t)frames, s->out_channels);
        s->counters[OUTPUT_CALLBACKS] += 1;
    }
    return 0; /* paContinue */
}
