/* sluiced: the config-driven sluice proxy. */
#include "sluice/sluice.h"

int main(int argc, char **argv)
{
	return sl_main(argc, argv, &sl_conf_proxy_ops);
}
