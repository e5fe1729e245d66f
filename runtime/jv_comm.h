/* jv_comm.h: the processes of one run (the trainer's own interface, not one
 * for generated code).
 *
 * A trainer is one process unless it was built with MPI (the generated
 * Makefile's MPI=1) and started by mpirun: then N processes, ranks 0..N-1,
 * run the same command. Two implementations provide these functions, chosen
 * when the trainer is linked: jv_comm_serial.c in libjmvaec.a (one process;
 * every exchange is a copy or nothing) and mpi/jv_comm_mpi.c in
 * libjmvaec_mpi.a (Open MPI, linked before libjmvaec.a so that its
 * definitions are the ones used).
 *
 * Only the calling thread of a team ever calls these. Exchanges move bytes;
 * no MPI reduction is used anywhere, so every sum is taken in an order the
 * trainer chooses (jv_trainer_chunks.c) and the results are the same bits
 * for any number of processes. A failed exchange ends the whole job (MPI's
 * default handler); a lost process makes mpirun end the others.
 */
#ifndef JV_COMM_H
#define JV_COMM_H

#include <stddef.h>

/* Starts the processes' communication (MPI_Init) and returns 0, or prints
 * why not and returns 1. Called once by jv_main, after the BLAS re-exec. */
int jv_comm_init(int *argc, char ***argv);
/* Ends it; exit code rc. Every process calls it once before returning. */
void jv_comm_finalize(void);
int jv_comm_rank(void);
int jv_comm_size(void);
/* 1 in a trainer built with MPI. mpirun gives its processes a terminal
 * even when its own output goes to a file, so these print no progress line. */
int jv_comm_is_mpi(void);
/* "one process (built without MPI)", "MPI: 2 processes (Open MPI v4.1.4)" */
const char *jv_comm_describe(void);

/* Sends send_bytes to dest while receiving recv_bytes from src. */
void jv_comm_sendrecv(const void *send, size_t send_bytes, int dest, void *recv, size_t recv_bytes, int src);
void jv_comm_send(const void *buf, size_t bytes, int dest);
void jv_comm_recv(void *buf, size_t bytes, int src);
/* In place: process p's bytes [displs[p], displs[p] + bytes[p]) of buf go to
 * every process (to process 0 only for gather0). */
void jv_comm_allgatherv(void *buf, const size_t *bytes, const size_t *displs);
void jv_comm_gather0(void *buf, const size_t *bytes, const size_t *displs);
void jv_comm_bcast(void *buf, size_t bytes, int root);
/* The largest x of all processes (for agreeing on a failure). */
int jv_comm_max(int x);
/* Ends every process of the job with exit code rc (never returns). */
void jv_comm_abort(int rc);

#endif
