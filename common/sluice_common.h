/* Constants and structs shared by BPF programs and user space.
 * The only place such a definition lives (BPF includes this file too). */
#ifndef SLUICE_COMMON_H
#define SLUICE_COMMON_H

#define SL_MAX_WORKERS 256   /* workers per daemon; also BPF map sizes */
#define SL_MAX_LISTENERS 64  /* listening addresses per daemon */

#endif
