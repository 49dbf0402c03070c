// Open MPI through plain C types: its handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM …) are
// macros over addresses of library globals that Swift cannot import, so the collectives the
// training loop needs are wrapped here. Every collective is started non-blocking and then
// waited for with a deadline (the watchdog): a rank that died or stalled ends the wait with
// GG_MPI_TIMEOUT instead of a hang.
#ifndef GRADGUARD_CGRADGUARDMPI_H
#define GRADGUARD_CGRADGUARDMPI_H

#include <stddef.h>
#include <stdint.h>

#define GG_MPI_OK 0
#define GG_MPI_ERROR 1
#define GG_MPI_TIMEOUT 2

/// Element types and reductions of `gg_mpi_allreduce`.
enum { GG_MPI_FLOAT = 0, GG_MPI_DOUBLE = 1, GG_MPI_INT64 = 2 };
enum { GG_MPI_SUM = 0, GG_MPI_MAX = 1, GG_MPI_MIN = 2 };

/// 1 when this process was started by an MPI launcher (mpirun, srun with PMIx).
int gg_mpi_launched(void);
/// Initialises MPI (once; later calls return the same). Fills rank and size; on failure
/// writes a sentence into `error` and returns GG_MPI_ERROR.
int gg_mpi_init(int *rank, int *size, char *error, size_t error_len);
int gg_mpi_initialized(void);
/// The host name MPI reports for this process.
void gg_mpi_processor_name(char *name, size_t len);

/// Collectives over MPI_COMM_WORLD, each waited for at most `timeout` seconds (≤ 0: no
/// limit). On failure a sentence goes into `error`.
int gg_mpi_allreduce(void *buffer, int64_t count, int type, int op, double timeout, char *error, size_t error_len);
/// Sum of `per_rank * size` floats from every rank, block `rank` kept in `recv` (per_rank floats).
int gg_mpi_reduce_scatter_float(const float *send, float *recv, int64_t per_rank, double timeout, char *error, size_t error_len);
/// Every rank's `bytes` bytes, in rank order, into `recv` (size × bytes).
int gg_mpi_allgather(const void *send, void *recv, int64_t bytes, double timeout, char *error, size_t error_len);
/// `bytes` bytes of `root`'s buffer into every rank's.
int gg_mpi_broadcast(void *buffer, int64_t bytes, int root, double timeout, char *error, size_t error_len);
int gg_mpi_barrier(double timeout, char *error, size_t error_len);

/// Collectives started and waited for later (gradient buckets launched while backward runs).
/// A start returns a handle, or NULL with a sentence in `error`. Every rank must start the
/// same collectives in the same order.
void *gg_mpi_start_reduce_scatter_float(const float *send, float *recv, int64_t per_rank, char *error, size_t error_len);
void *gg_mpi_start_allgather(const void *send, void *recv, int64_t bytes, char *error, size_t error_len);
/// Whether a started collective has finished (`*done`); drives its progress. The handle stays
/// valid until `gg_mpi_wait_request`.
int gg_mpi_test_request(void *handle, int *done, char *error, size_t error_len);
/// Waits for a started collective at most `timeout` seconds, then frees its handle (also on failure).
int gg_mpi_wait_request(void *handle, double timeout, char *error, size_t error_len);
/// Tells the other ranks that this one reached step `step` (rank 0 tells every rank; the others
/// tell rank 0). Never blocks: a message still in flight from the last call is not repeated.
void gg_mpi_heartbeat(int64_t step);
/// The ranks whose last heartbeat, as far as this rank knows, is older than `step` (rank 0
/// knows every rank; the others know rank 0). Writes at most `max` ranks into `ranks`, and
/// their last steps (-1: none yet) into `last`; returns how many.
int gg_mpi_lagging(int64_t step, int *ranks, int64_t *last, int max);
/// Ends every process of the job with `code`.
void gg_mpi_abort(int code);
int gg_mpi_finalize(void);
/// Seconds since an arbitrary start (MPI_Wtime).
double gg_mpi_wtime(void);

#endif
