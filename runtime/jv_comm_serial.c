/* jv_comm_serial.c: jv_comm.h for a trainer built without MPI: one process,
 * rank 0 of 1. Exchanges with oneself are copies (only a sendrecv to
 * oneself moves bytes; the gathers find the bytes already in place). */
#include <stdlib.h>
#include <string.h>

#include "jv_comm.h"

int jv_comm_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

void jv_comm_finalize(void)
{
}

int jv_comm_rank(void)
{
    return 0;
}

int jv_comm_size(void)
{
    return 1;
}

int jv_comm_is_mpi(void)
{
    return 0;
}

const char *jv_comm_describe(void)
{
    return "one process (built without MPI)";
}

void jv_comm_sendrecv(const void *send, size_t send_bytes, int dest, void *recv, size_t recv_bytes, int src)
{
    (void)dest;
    (void)src;
    if (recv != send)
        memcpy(recv, send, send_bytes < recv_bytes ? send_bytes : recv_bytes);
}

/* With one process there is no one to send to: never called. */
void jv_comm_send(const void *buf, size_t bytes, int dest)
{
    (void)buf;
    (void)bytes;
    (void)dest;
    abort();
}

void jv_comm_recv(void *buf, size_t bytes, int src)
{
    (void)buf;
    (void)bytes;
    (void)src;
    abort();
}

void jv_comm_allgatherv(void *buf, const size_t *bytes, const size_t *displs)
{
    (void)buf;
    (void)bytes;
    (void)displs;
}

void jv_comm_gather0(void *buf, const size_t *bytes, const size_t *displs)
{
    (void)buf;
    (void)bytes;
    (void)displs;
}

void jv_comm_bcast(void *buf, size_t bytes, int root)
{
    (void)buf;
    (void)bytes;
    (void)root;
}

int jv_comm_max(int x)
{
    return x;
}

void jv_comm_abort(int rc)
{
    exit(rc);
}
