/*
 * test_bus_fallback: the bus's hooks for its second path (storage/bus.h,
 * used by storage/pg_bus.c): a message Redis cannot take goes to the
 * fallback with its bytes; a message from the fallback reaches the message
 * callback only for channels with interest, as Redis would; a gap runs the
 * subscribed callback (the caller's catch-up) only for those; a closed bus
 * sends nothing; copies (bus_set_fallback_copies) are only of what Redis
 * took. No Redis: the bus points at a port nothing listens on.
 */
#include "bus.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

static struct {
    int fallbacks, copies, messages, gaps;
    char channel[64], payload[64];
    size_t len;
} seen;

static int on_fallback(void *arg, const char *channel, const char *payload, size_t len, bool copy)
{
    (void)arg;
    seen.fallbacks++;
    seen.copies += copy;
    snprintf(seen.channel, sizeof seen.channel, "%s", channel);
    seen.len = len < sizeof seen.payload ? len : sizeof seen.payload - 1;
    memcpy(seen.payload, payload, seen.len);
    seen.payload[seen.len] = '\0';
    return 0;
}

static void on_message(void *arg, const char *channel, const char *payload, size_t len)
{
    (void)arg;
    seen.messages++;
    snprintf(seen.channel, sizeof seen.channel, "%s", channel);
    seen.len = len < sizeof seen.payload ? len : sizeof seen.payload - 1;
    memcpy(seen.payload, payload, seen.len);
    seen.payload[seen.len] = '\0';
}

static void on_subscribed(void *arg, const char *channel)
{
    (void)arg;
    seen.gaps++;
    snprintf(seen.channel, sizeof seen.channel, "%s", channel);
}

static void on_link(void *arg, int up)
{
    (void)arg;
    (void)up;
}

int main(void)
{
    uv_loop_t loop;
    char err[256] = "";
    bus_config_t cfg = {.url = "redis://127.0.0.1:1"};
    bus_t *bus;

    uv_loop_init(&loop);
    bus = bus_new(&loop, &cfg, on_message, on_link, NULL, err, sizeof err);
    CHECK(bus != NULL, "bus_new");
    if (!bus)
        return check_report();
    bus_set_subscribed_cb(bus, on_subscribed);

    CHECK(bus_publish(bus, "rn:user:7", "{\"a\":1}", 7) == -1, "no Redis: publish says so");
    CHECK(seen.fallbacks == 0, "no fallback set: nothing sent");
    bus_set_fallback(bus, on_fallback, NULL);
    CHECK(bus_publish(bus, "rn:user:7", "{\"a\":1}xx", 7) == -1,
          "with a fallback the caller still delivers locally");
    CHECK(seen.fallbacks == 1, "the fallback got the message");
    CHECK(strcmp(seen.channel, "rn:user:7") == 0, "its channel");
    CHECK(seen.len == 7 && strcmp(seen.payload, "{\"a\":1}") == 0, "its bytes, len of them");
    bus_set_fallback_copies(bus, true);
    CHECK(bus_publish(bus, "rn:user:7", "c", 1) == -1 && seen.fallbacks == 2 && seen.copies == 0,
          "copying, but Redis did not take it: once, and not as a copy");
    bus_set_fallback_copies(bus, false);

    bus_deliver(bus, "rn:user:7", "x", 1);
    CHECK(seen.messages == 0, "no interest: not delivered (Redis would not have sent it)");
    bus_deliver_gap(bus, "rn:user:7");
    CHECK(seen.gaps == 0, "no interest: no catch-up");
    CHECK(bus_subscribe(bus, "rn:user:7") == 0, "subscribe");
    bus_deliver(bus, "rn:user:7", "hello", 5);
    CHECK(seen.messages == 1 && strcmp(seen.payload, "hello") == 0, "delivered with interest");
    bus_deliver(bus, "rn:user:8", "hello", 5);
    CHECK(seen.messages == 1, "another channel: not delivered");
    bus_deliver_gap(bus, "rn:user:7");
    CHECK(seen.gaps == 1 && strcmp(seen.channel, "rn:user:7") == 0, "a gap runs the catch-up");
    CHECK(bus_unsubscribe(bus, "rn:user:7") == 0, "unsubscribe");
    bus_deliver(bus, "rn:user:7", "late", 4);
    CHECK(seen.messages == 1, "interest gone: not delivered");

    bus_close(bus);
    CHECK(bus_publish(bus, "rn:user:7", "z", 1) == -1, "closed: refused");
    CHECK(seen.fallbacks == 2, "closed: nothing to the fallback");
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0, "every handle closed");
    return check_report();
}
