/* sluicectl's upstream command (tools/sluicectl_upstream.c). */
#ifndef SLUICECTL_UPSTREAM_H
#define SLUICECTL_UPSTREAM_H

int sl_ctl_upstream(int argc, char **argv);

#endif
