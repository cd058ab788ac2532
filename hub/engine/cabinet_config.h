/*
 * cabinet_config: the `cabinet_config` push a cabinet gets when it connects
 * (PROTOCOL.md): its games by slot, limits, maintenance state and the
 * server's time, as GET /api/v1/arcades/{id}/config answers it. Catalogue
 * edits push the same object themselves, from their SQL function
 * (rn_catalogue_push, storage/sql/05_admin.sql).
 *
 * The push is a private cabinet event (a user_events row, acked by the
 * cabinet, replayed on resume) written by rn_cabinet_config_push and
 * published on rn:cabinet:<id>, so it reaches the cabinet whichever hub
 * process holds its socket. Loop thread only.
 */
#ifndef RN_CABINET_CONFIG_H
#define RN_CABINET_CONFIG_H

#include "hub.h"

/*
 * Writes and publishes the arcade's cabinet_config event. 0, or -1 when the
 * query could not be sent (nothing is pushed; the cabinet can still GET its
 * config). A failure after that is logged.
 */
int cabinet_config_push(hub_t *hub, long arcade_id);

#endif
