/* The one intrusive doubly linked list: a struct sl_link inside each element, a struct
 * sl_list (head, tail) where the list is kept. Both are valid when zeroed (an empty
 * list, an unlinked element), so objects from calloc/memset need no set-up. Removal
 * takes the list: an element does not know which list it is on (its owner does). */
#ifndef SL_LIST_H
#define SL_LIST_H

#include <stddef.h>

struct sl_link {
	struct sl_link *prev, *next;
};

struct sl_list {
	struct sl_link *head, *tail;
};

#define sl_container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))
/* The element holding link p, or NULL for a NULL link. */
#define sl_list_entry(p, type, member)                                                             \
	({                                                                                         \
		struct sl_link *l_ = (p);                                                          \
		l_ ? sl_container_of(l_, type, member) : (type *)NULL;                             \
	})

static inline int sl_list_empty(const struct sl_list *l)
{
	return !l->head;
}

static inline void sl_list_add_tail(struct sl_list *l, struct sl_link *n)
{
	n->next = NULL;
	n->prev = l->tail;
	if (l->tail)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
}

static inline void sl_list_add_head(struct sl_list *l, struct sl_link *n)
{
	n->prev = NULL;
	n->next = l->head;
	if (l->head)
		l->head->prev = n;
	else
		l->tail = n;
	l->head = n;
}

/* n must be on l. It leaves unlinked (both pointers NULL). */
static inline void sl_list_del(struct sl_list *l, struct sl_link *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	n->prev = n->next = NULL;
}

#endif
