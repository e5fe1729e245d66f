/* jv_comm_mpi.c: jv_comm.h on MPI (built with mpicc into libjmvaec_mpi.a,
 * which a trainer built with MPI=1 links before libjmvaec.a).
 *
 * Bytes move as 4-byte words (MPI_UINT32_T: no conversion, NaNs and
 * signed zeros kept), so a message of up to 8 GiB fits MPI's int counts
 * (gathers of sizes that are not multiples of 4 move bytes).
 * Only point-to-point exchanges, gathers and broadcasts are used, never an
 * MPI reduction: the trainer sums in its own fixed order. Errors keep MPI's
 * default handler, which ends the whole job.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "jv_comm.h"

static int rank_, size_ = 1, started;
static char describe_[400];

int jv_comm_init(int *argc, char ***argv)
{
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "cannot start MPI\n");
        return 1;
    }
    started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(lib, &len);
    lib[len < (int)sizeof lib ? len : (int)sizeof lib - 1] = 0;
    lib[strcspn(lib, ",\n")] = 0;
    snprintf(describe_, sizeof describe_, "MPI: %d process%s (%.200s)", size_, size_ == 1 ? "" : "es", lib);
    return 0;
}

void jv_comm_finalize(void)
{
    if (started)
        MPI_Finalize();
    started = 0;
}

int jv_comm_rank(void)
{
    return rank_;
}

int jv_comm_size(void)
{
    return size_;
}

int jv_comm_is_mpi(void)
{
    return 1;
}

const char *jv_comm_describe(void)
{
    return describe_[0] ? describe_ : "MPI, not started";
}

static int words(size_t bytes)
{
    if (bytes % 4 != 0 || bytes / 4 > (size_t)INT_MAX) {
        fprintf(stderr, "rank %d: an exchange of %zu bytes: not a whole number of 4-byte words below 8 GiB\n", rank_,
                bytes);
        MPI_Abort(MPI_COMM_WORLD, 70);
    }
    return (int)(bytes / 4);
}

void jv_comm_sendrecv(const void *send, size_t send_bytes, int dest, void *recv, size_t recv_bytes, int src)
{
    MPI_Sendrecv(send, words(send_bytes), MPI_UINT32_T, dest, 1, recv, words(recv_bytes), MPI_UINT32_T, src, 1,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

void jv_comm_send(const void *buf, size_t bytes, int dest)
{
    MPI_Send(buf, words(bytes), MPI_UINT32_T, dest, 2, MPI_COMM_WORLD);
}

void jv_comm_recv(void *buf, size_t bytes, int src)
{
    MPI_Recv(buf, words(bytes), MPI_UINT32_T, src, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

/* Counts and displacements for every process: in 4-byte words when every
 * size is a multiple of 4, else in bytes; the type to use. */
static MPI_Datatype layout(const size_t *bytes, const size_t *displs, int *counts, int *offsets)
{
    int whole = 1;
    for (int p = 0; p < size_; p++)
        whole = whole && bytes[p] % 4 == 0 && displs[p] % 4 == 0;
    for (int p = 0; p < size_; p++) {
        size_t n = whole ? bytes[p] / 4 : bytes[p], at = whole ? displs[p] / 4 : displs[p];
        if (n > (size_t)INT_MAX || at > (size_t)INT_MAX) {
            fprintf(stderr, "rank %d: a gather of %zu bytes at %zu: too large for MPI's counts\n", rank_, bytes[p],
                    displs[p]);
            MPI_Abort(MPI_COMM_WORLD, 70);
        }
        counts[p] = (int)n;
        offsets[p] = (int)at;
    }
    return whole ? MPI_UINT32_T : MPI_BYTE;
}

/* The layout of a gather for MPI: counts then offsets, malloc'd (freed by the caller). */
static int *gather_layout(const size_t *bytes, const size_t *displs, MPI_Datatype *type)
{
    int *counts = malloc(2 * (size_t)size_ * sizeof *counts);
    if (!counts) {
        fprintf(stderr, "rank %d: out of memory\n", rank_);
        MPI_Abort(MPI_COMM_WORLD, 71);
    }
    *type = layout(bytes, displs, counts, counts + size_);
    return counts;
}

void jv_comm_allgatherv(void *buf, const size_t *bytes, const size_t *displs)
{
    if (size_ == 1)
        return;
    MPI_Datatype type;
    int *counts = gather_layout(bytes, displs, &type);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, counts + size_, type, MPI_COMM_WORLD);
    free(counts);
}

void jv_comm_gather0(void *buf, const size_t *bytes, const size_t *displs)
{
    if (size_ == 1)
        return;
    MPI_Datatype type;
    int *counts = gather_layout(bytes, displs, &type);
    if (rank_ == 0)
        MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, counts + size_, type, 0, MPI_COMM_WORLD);
    else
        MPI_Gatherv((char *)buf + displs[rank_], counts[rank_], type, NULL, NULL, NULL, type, 0, MPI_COMM_WORLD);
    free(counts);
}

void jv_comm_bcast(void *buf, size_t bytes, int root)
{
    if (size_ > 1)
        MPI_Bcast(buf, words(bytes), MPI_UINT32_T, root, MPI_COMM_WORLD);
}

int jv_comm_max(int x)
{
    int y = x;
    if (size_ > 1)
        MPI_Allreduce(&x, &y, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return y;
}

void jv_comm_abort(int rc)
{
    if (started && size_ > 1)
        MPI_Abort(MPI_COMM_WORLD, rc);
    exit(rc);
}
