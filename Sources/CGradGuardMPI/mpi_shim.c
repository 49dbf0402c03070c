// See CGradGuardMPI.h.
#include "CGradGuardMPI.h"
#include <mpi.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int gg_mpi_launched(void) {
    // Open MPI's launcher sets OMPI_COMM_WORLD_*; PMIx-based launchers set PMIX_RANK.
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL;
}

static void say(char *error, size_t len, const char *what, int code) {
    if (!error || len == 0) return;
    char text[MPI_MAX_ERROR_STRING] = {0};
    int n = 0;
    if (code != MPI_SUCCESS && MPI_Error_string(code, text, &n) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", code);
    if (code == MPI_SUCCESS)
        snprintf(error, len, "%s", what);
    else
        snprintf(error, len, "%s: %s", what, text);
}

int gg_mpi_initialized(void) {
    int flag = 0, finalized = 0;
    MPI_Initialized(&flag);
    MPI_Finalized(&finalized);
    return flag && !finalized;
}

int gg_mpi_init(int *rank, int *size, char *error, size_t error_len) {
    if (!gg_mpi_initialized()) {
        int provided = 0;
        // Serialized: the training loop may call from more than one thread, never two at once.
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) {
            say(error, error_len, "MPI_Init_thread failed", rc);
            return GG_MPI_ERROR;
        }
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return GG_MPI_OK;
}

void gg_mpi_processor_name(char *name, size_t len) {
    char buf[MPI_MAX_PROCESSOR_NAME] = {0};
    int n = 0;
    if (gg_mpi_initialized()) MPI_Get_processor_name(buf, &n);
    snprintf(name, len, "%s", buf);
}

double gg_mpi_wtime(void) { return MPI_Wtime(); }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Polls a started collective until it completes or `timeout` seconds pass. Spins at first
// (collectives of a training step finish in micro- to milliseconds), then yields, then
// sleeps, so a long wait for a slow rank does not take a core from the others.
static int wait_for(MPI_Request *request, double timeout, const char *what, char *error, size_t len) {
    double start = now();
    long polls = 0;
    for (;;) {
        int done = 0;
        int rc = MPI_Test(request, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            say(error, len, what, rc);
            return GG_MPI_ERROR;
        }
        if (done) return GG_MPI_OK;
        polls++;
        if ((polls & 255) == 0) {
            double waited = now() - start;
            if (timeout > 0 && waited > timeout) {
                if (error && len) snprintf(error, len, "%s: no answer from every rank within %.0f s", what, timeout);
                return GG_MPI_TIMEOUT;
            }
            if (waited > 1.0) {
                struct timespec pause = {0, 200000};
                nanosleep(&pause, NULL);
            } else if (waited > 0.001) {
                sched_yield();
            }
        }
    }
}

static MPI_Datatype datatype(int type) {
    switch (type) {
    case GG_MPI_DOUBLE: return MPI_DOUBLE;
    case GG_MPI_INT64: return MPI_INT64_T;
    default: return MPI_FLOAT;
    }
}

static size_t type_size(int type) { return type == GG_MPI_FLOAT ? 4 : 8; }

static MPI_Op operation(int op) {
    switch (op) {
    case GG_MPI_MAX: return MPI_MAX;
    case GG_MPI_MIN: return MPI_MIN;
    default: return MPI_SUM;
    }
}

// MPI counts are ints: larger messages go in pieces of at most this many elements.
static const int64_t piece = 1 << 28;

int gg_mpi_allreduce(void *buffer, int64_t count, int type, int op, double timeout, char *error, size_t error_len) {
    char *p = buffer;
    for (int64_t done = 0; done < count; done += piece) {
        int n = (int)(count - done < piece ? count - done : piece);
        MPI_Request r;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, p + done * type_size(type), n, datatype(type), operation(op), MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) {
            say(error, error_len, "all-reduce", rc);
            return GG_MPI_ERROR;
        }
        rc = wait_for(&r, timeout, "all-reduce", error, error_len);
        if (rc != GG_MPI_OK) return rc;
    }
    return GG_MPI_OK;
}

int gg_mpi_reduce_scatter_float(const float *send, float *recv, int64_t per_rank, double timeout, char *error, size_t error_len) {
    if (per_rank > INT_MAX) {
        say(error, error_len, "reduce-scatter: a block of more than 2^31 floats", MPI_SUCCESS);
        return GG_MPI_ERROR;
    }
    MPI_Request r;
    int rc = MPI_Ireduce_scatter_block(send, recv, (int)per_rank, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
    if (rc != MPI_SUCCESS) {
        say(error, error_len, "reduce-scatter", rc);
        return GG_MPI_ERROR;
    }
    return wait_for(&r, timeout, "reduce-scatter", error, error_len);
}

int gg_mpi_allgather(const void *send, void *recv, int64_t bytes, double timeout, char *error, size_t error_len) {
    if (bytes > INT_MAX) {
        say(error, error_len, "all-gather: more than 2 GiB from one rank", MPI_SUCCESS);
        return GG_MPI_ERROR;
    }
    MPI_Request r;
    int rc = MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &r);
    if (rc != MPI_SUCCESS) {
        say(error, error_len, "all-gather", rc);
        return GG_MPI_ERROR;
    }
    return wait_for(&r, timeout, "all-gather", error, error_len);
}

int gg_mpi_broadcast(void *buffer, int64_t bytes, int root, double timeout, char *error, size_t error_len) {
    char *p = buffer;
    for (int64_t done = 0; done < bytes || (bytes == 0 && done == 0); done += piece) {
        int n = (int)(bytes - done < piece ? bytes - done : piece);
        MPI_Request r;
        int rc = MPI_Ibcast(p + done, n, MPI_BYTE, root, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) {
            say(error, error_len, "broadcast", rc);
            return GG_MPI_ERROR;
        }
        rc = wait_for(&r, timeout, "broadcast", error, error_len);
        if (rc != GG_MPI_OK) return rc;
        if (bytes == 0) break;
    }
    return GG_MPI_OK;
}

struct gg_request {
    MPI_Request request;
    int done;
    const char *what;
};

static void *started(int rc, MPI_Request r, const char *what, char *error, size_t len) {
    if (rc != MPI_SUCCESS) {
        say(error, len, what, rc);
        return NULL;
    }
    struct gg_request *h = malloc(sizeof *h);
    if (!h) {
        MPI_Wait(&r, MPI_STATUS_IGNORE);
        say(error, len, "out of memory for a request", MPI_SUCCESS);
        return NULL;
    }
    h->request = r;
    h->done = 0;
    h->what = what;
    return h;
}

void *gg_mpi_start_reduce_scatter_float(const float *send, float *recv, int64_t per_rank, char *error, size_t error_len) {
    if (per_rank > INT_MAX) {
        say(error, error_len, "reduce-scatter: a block of more than 2^31 floats", MPI_SUCCESS);
        return NULL;
    }
    MPI_Request r;
    int rc = MPI_Ireduce_scatter_block(send, recv, (int)per_rank, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
    return started(rc, r, "reduce-scatter", error, error_len);
}

void *gg_mpi_start_allgather(const void *send, void *recv, int64_t bytes, char *error, size_t error_len) {
    if (bytes > INT_MAX) {
        say(error, error_len, "all-gather: more than 2 GiB from one rank", MPI_SUCCESS);
        return NULL;
    }
    MPI_Request r;
    int rc = MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD, &r);
    return started(rc, r, "all-gather", error, error_len);
}

int gg_mpi_test_request(void *handle, int *done, char *error, size_t error_len) {
    struct gg_request *h = handle;
    if (!h->done) {
        int rc = MPI_Test(&h->request, &h->done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            say(error, error_len, h->what, rc);
            return GG_MPI_ERROR;
        }
    }
    *done = h->done;
    return GG_MPI_OK;
}

int gg_mpi_wait_request(void *handle, double timeout, char *error, size_t error_len) {
    struct gg_request *h = handle;
    int rc = h->done ? GG_MPI_OK : wait_for(&h->request, timeout, h->what, error, error_len);
    free(h);
    return rc;
}

int gg_mpi_barrier(double timeout, char *error, size_t error_len) {
    MPI_Request r;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &r);
    if (rc != MPI_SUCCESS) {
        say(error, error_len, "barrier", rc);
        return GG_MPI_ERROR;
    }
    return wait_for(&r, timeout, "barrier", error, error_len);
}

// Heartbeats: small point-to-point messages outside the collectives, so that a rank whose
// watchdog fires can say which rank has not arrived. Rank 0 hears from every rank, the others
// from rank 0.
enum { HEARTBEAT_TAG = 7301 };
static int hb_size = 0;
static int64_t *hb_last;        // the newest step heard from each rank (-1: none)
static int64_t *hb_in;          // receive buffers
static MPI_Request *hb_recv;    // one posted receive per peer
static int64_t *hb_out;         // send buffers
static MPI_Request *hb_send;    // one send in flight per peer at most

static int is_peer(int me, int r) { return r != me && (me == 0 || r == 0); }

static void heartbeat_start(void) {
    if (hb_size) return;
    int me = 0, n = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    hb_last = malloc(sizeof(int64_t) * n);
    hb_in = malloc(sizeof(int64_t) * n);
    hb_out = malloc(sizeof(int64_t) * n);
    hb_recv = malloc(sizeof(MPI_Request) * n);
    hb_send = malloc(sizeof(MPI_Request) * n);
    if (!hb_last || !hb_in || !hb_out || !hb_recv || !hb_send) return;
    for (int r = 0; r < n; r++) {
        hb_last[r] = -1;
        hb_recv[r] = MPI_REQUEST_NULL;
        hb_send[r] = MPI_REQUEST_NULL;
        if (is_peer(me, r)) MPI_Irecv(&hb_in[r], 1, MPI_INT64_T, r, HEARTBEAT_TAG, MPI_COMM_WORLD, &hb_recv[r]);
    }
    hb_size = n;
}

// Takes in every heartbeat that has arrived, reposting the receives.
static void heartbeat_drain(void) {
    for (int r = 0; r < hb_size; r++) {
        while (hb_recv[r] != MPI_REQUEST_NULL) {
            int done = 0;
            if (MPI_Test(&hb_recv[r], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done) break;
            if (hb_in[r] > hb_last[r]) hb_last[r] = hb_in[r];
            MPI_Irecv(&hb_in[r], 1, MPI_INT64_T, r, HEARTBEAT_TAG, MPI_COMM_WORLD, &hb_recv[r]);
        }
    }
}

void gg_mpi_heartbeat(int64_t step) {
    if (!gg_mpi_initialized()) return;
    heartbeat_start();
    if (!hb_size) return;
    int me = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    hb_last[me] = step;
    for (int r = 0; r < hb_size; r++) {
        if (!is_peer(me, r)) continue;
        int done = 1;
        if (hb_send[r] != MPI_REQUEST_NULL) MPI_Test(&hb_send[r], &done, MPI_STATUS_IGNORE);
        if (!done) continue;
        hb_out[r] = step;
        MPI_Isend(&hb_out[r], 1, MPI_INT64_T, r, HEARTBEAT_TAG, MPI_COMM_WORLD, &hb_send[r]);
    }
    heartbeat_drain();
}

int gg_mpi_lagging(int64_t step, int *ranks, int64_t *last, int max) {
    if (!hb_size) return 0;
    heartbeat_drain();
    int me = 0, count = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    for (int r = 0; r < hb_size && count < max; r++) {
        if (!is_peer(me, r) || hb_last[r] >= step) continue;
        ranks[count] = r;
        last[count] = hb_last[r];
        count++;
    }
    return count;
}

void gg_mpi_abort(int code) {
    if (gg_mpi_initialized()) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

int gg_mpi_finalize(void) { return gg_mpi_initialized() ? MPI_Finalize() : MPI_SUCCESS; }
