/*
 * test_redis_slot: Redis Cluster's key slots (CRC16 and hash tags, checked
 * against `redis-cli cluster keyslot`), the CLUSTER SLOTS parser on replies
 * read by hiredis's own reader from RESP text, MOVED/ASK targets, and the
 * redis-cluster:// URLs bus_new() accepts or refuses.
 */
#include "check.h"

#include "bus.h"
#include "redis_slot.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

/* One reply from RESP text (hiredis's reader, as on a link); NULL if incomplete. */
static redisReply *resp(const char *text)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;

    redisReaderFeed(r, text, strlen(text));
    if (redisReaderGetReply(r, &reply) != REDIS_OK)
        reply = NULL;
    redisReaderFree(r);
    return reply;
}

static unsigned slot_of(const char *key)
{
    return redis_slot(key, strlen(key));
}

static void test_slots(void)
{
    CHECK(redis_crc16("123456789", 9) == 0x31C3, "CRC16/XMODEM check value");
    CHECK(slot_of("foo") == 12182 && slot_of("bar") == 5061 && slot_of("hello") == 866,
          "slots as redis-cli cluster keyslot gives them");
    CHECK(slot_of("user1000") == 3443 && slot_of("{user1000}.following") == 3443,
          "a hash tag alone decides");
    CHECK(slot_of("foo{}{bar}") == 8363, "an empty tag: the whole key");
    CHECK(slot_of("foo{{bar}}zap") == 4015, "the tag runs from the first { to the next }");
    CHECK(slot_of("foo{bar}{zap}") == 5061, "only the first tag");
    CHECK(slot_of("foo{bar") == redis_crc16("foo{bar", 7) % REDIS_SLOTS, "an open tag: whole key");
    CHECK(slot_of("rn:{rl}:rest_ip:10.0.0.1") == slot_of("rn:{rl}:rest_user:alice"),
          "the rate limit's buckets share one slot");
    CHECK(redis_slot("", 0) == 0, "the empty key");
}

/* A node entry at 127.0.0.1:port. */
#define NODE(port) "*3\r\n$9\r\n127.0.0.1\r\n:" #port "\r\n$2\r\nid\r\n"

static void test_map(void)
{
    redis_slot_map_t *map = malloc(sizeof(*map));
    const char *err = NULL;
    redisReply *r;

    /* Three masters, one replica each, as Redis 7 answers (4-element node entries). */
    r = resp("*3\r\n"
             "*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*0\r\n"
             "*4\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nid\r\n*0\r\n"
             "*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n*0\r\n"
             "*4\r\n:10923\r\n:16383\r\n*4\r\n$0\r\n\r\n:7002\r\n$2\r\nid\r\n*0\r\n"
             "*4\r\n$9\r\n127.0.0.1\r\n:7005\r\n$2\r\nid\r\n*0\r\n");
    CHECK(r != NULL, "RESP sample reads");
    CHECK(redis_slot_map_parse(map, r, "10.1.1.1", &err) == 0, "a full table parses");
    CHECK(map->complete && map->nnodes == 3, "three masters, every slot");
    CHECK(map->owner[0] == 0 && map->owner[5460] == 0 && map->owner[5461] == 1 &&
              map->owner[16383] == 2,
          "ranges go to their master");
    CHECK(strcmp(map->node[2].host, "10.1.1.1") == 0 && map->node[2].port == 7002,
          "an empty address is the node asked");
    CHECK(redis_slot_map_find(map, "127.0.0.1", 7001) == 1 &&
              redis_slot_map_find(map, "127.0.0.1", 7003) == -1,
          "replicas are not masters");
    freeReplyObject(r);

    r = resp("*1\r\n*3\r\n:0\r\n:100\r\n" NODE(7000));
    CHECK(redis_slot_map_parse(map, r, NULL, &err) == 0 && !map->complete && map->owner[100] == 0 &&
              map->owner[101] == -1,
          "a partial table is not complete");
    freeReplyObject(r);

    r = resp("*0\r\n");
    CHECK(redis_slot_map_parse(map, r, NULL, &err) == 0 && !map->complete && map->nnodes == 0,
          "no slots at all (a cluster being built)");
    freeReplyObject(r);

    const char *bad[] = {
        "-ERR This instance has cluster support disabled\r\n",
        ":1\r\n",
        "*1\r\n:5\r\n",
        "*1\r\n*2\r\n:0\r\n:1\r\n",
        "*1\r\n*3\r\n:5\r\n:1\r\n" NODE(7000),
        "*1\r\n*3\r\n:0\r\n:16384\r\n" NODE(7000),
        "*1\r\n*3\r\n:-1\r\n:3\r\n" NODE(7000),
        "*1\r\n*3\r\n:0\r\n:3\r\n" NODE(0),
        "*1\r\n*3\r\n:0\r\n:3\r\n" NODE(70000),
        "*1\r\n*3\r\n:0\r\n:3\r\n*1\r\n$9\r\n127.0.0.1\r\n",
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n:1\r\n:7000\r\n",
        "*1\r\n*3\r\n$1\r\n0\r\n:3\r\n" NODE(7000),
        ("*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$50\r\n01234567890123456789012345678901234567890123456789"
         "\r\n:7000\r\n"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        r = resp(bad[i]);
        CHECK(r != NULL, "bad sample reads");
        CHECK(redis_slot_map_parse(map, r, "", &err) == -1 && err != NULL, bad[i]);
        freeReplyObject(r);
    }
    CHECK(redis_slot_map_parse(map, NULL, NULL, NULL) == -1, "no reply, no err pointer");
    free(map);
}

static void test_redirect(void)
{
    redis_addr_t a;
    unsigned slot = 0;
    const char *m;

    m = "MOVED 3999 127.0.0.1:6381";
    CHECK(redis_redirect_parse(m, strlen(m), &slot, &a) == 1 && slot == 3999 &&
              strcmp(a.host, "127.0.0.1") == 0 && a.port == 6381,
          "MOVED");
    m = "ASK 12 [::1]:7000";
    CHECK(redis_redirect_parse(m, strlen(m), &slot, &a) == 2 && slot == 12 &&
              strcmp(a.host, "::1") == 0 && a.port == 7000,
          "ASK to an IPv6 node");
    m = "MOVED 5 :7002";
    CHECK(redis_redirect_parse(m, strlen(m), &slot, &a) == 1 && a.host[0] == '\0' && a.port == 7002,
          "MOVED to the node that answered");
    const char *bad[] = {"ERR unknown command",  "MOVED",
                         "MOVED x 1.2.3.4:5",    "MOVED 16384 a:1",
                         "MOVED 1 1.2.3.4",      "MOVED 1 1.2.3.4:0",
                         "MOVED 1 1.2.3.4:5x",   "CLUSTERDOWN The cluster is down",
                         "MOVED 1 1.2.3.4:99999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(redis_redirect_parse(bad[i], strlen(bad[i]), &slot, &a) == 0, bad[i]);
}

static void test_urls(void)
{
    uv_loop_t loop;
    char err[256];
    const char *good[] = {"redis-cluster://127.0.0.1:7000",
                          "redis-cluster://127.0.0.1:7000,127.0.0.1:7001,[::1]:7002",
                          "redis-cluster://localhost,redis-a.example:7001"};
    const char *bad[] = {"redis-cluster://",
                         "redis-cluster://127.0.0.1:7000,",
                         "redis-cluster://127.0.0.1:7000,,127.0.0.1:7001",
                         "redis-cluster://127.0.0.1:0",
                         "redis-cluster://127.0.0.1:7000/0",
                         "redis-cluster://user@127.0.0.1:7000",
                         "redis-cluster://[::1:7000",
                         "redis-cluster://bad_host:7000",
                         "redis-cluster://1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
                         "redis-clusters://127.0.0.1:7000"};

    uv_loop_init(&loop);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        bus_config_t cfg = {.url = good[i]};
        bus_t *bus = bus_new(&loop, &cfg, NULL, NULL, NULL, err, sizeof err);
        CHECK(bus != NULL, good[i]);
        if (bus != NULL)
            bus_close(bus);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bus_config_t cfg = {.url = bad[i]};
        err[0] = '\0';
        CHECK(bus_new(&loop, &cfg, NULL, NULL, NULL, err, sizeof err) == NULL && err[0] != '\0',
              bad[i]);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0, "nothing left on the loop");
}

int main(void)
{
    test_slots();
    test_map();
    test_redirect();
    test_urls();
    return check_report();
}
