/*
 * api: the REST routes, one table per module (api_<area>.c), each a
 * route_table_t of {method, pattern, access, handler} rows (router.h).
 * The composition root (hub.c) hands them to http_set_routes; a new module
 * adds its table here and to hub.c's list. Handlers run on the loop thread
 * and answer exactly once (http.h).
 */
#ifndef RN_API_H
#define RN_API_H

#include "router.h"

extern const route_table_t api_ops_routes;
extern const route_table_t api_tickets_routes;
extern const route_table_t api_admin_routes;
extern const route_table_t api_queue_routes;
extern const route_table_t api_social_routes;
extern const route_table_t api_catalogue_routes;
extern const route_table_t api_cabinet_config_routes;
extern const route_table_t api_player_routes; /* after social: its fixed /users paths first */
extern const route_table_t api_reports_routes;
extern const route_table_t api_opsqueue_routes;

/* Test builds only (RN_DEBUG_ROUTES): see debug_routes.c. */
extern const route_table_t api_debug_routes;

#endif
