// Go peer baseline (NOT the product): what a compiled counter service does per request.
//
// net/http + redigo, one INCR per POST on one standalone Redis node, like Abacus
// (Go + Redis): no tenant, no auth, no dirty mark, nothing written to PostgreSQL.
// GET reads the value. One process; its parallelism is GOMAXPROCS, which the
// benchmark sets from the sweep's worker count so the peer is measured at its best.
//
// Built offline in GOPATH mode against Debian's golang-github-gomodule-redigo-dev
// (benchmarks/go_peer.py); run as: go-peer -addr 127.0.0.1:P -redis 127.0.0.1:R
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

const prefix = "/v1/misc/counter/"

// validNamespace mirrors the service's rule (1-64 of [A-Za-z0-9_-]) at a few ns per call.
func validNamespace(ns string) bool {
	if len(ns) == 0 || len(ns) > 64 {
		return false
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func reply(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

type counters struct{ pool *redis.Pool }

func (c *counters) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ns := strings.TrimPrefix(r.URL.Path, prefix)
	if !validNamespace(ns) {
		reply(w, http.StatusBadRequest, []byte(`{"error":"invalid namespace"}`))
		return
	}
	conn := c.pool.Get()
	defer conn.Close()
	var value int64
	var err error
	switch r.Method {
	case http.MethodPost:
		value, err = redis.Int64(conn.Do("INCR", "peer:"+ns))
	case http.MethodGet:
		value, err = redis.Int64(conn.Do("GET", "peer:"+ns))
		if err == redis.ErrNil {
			value, err = 0, nil
		}
	default:
		reply(w, http.StatusMethodNotAllowed, []byte(`{"error":"method not allowed"}`))
		return
	}
	if err != nil {
		reply(w, http.StatusServiceUnavailable, []byte(`{"error":"redis unavailable"}`))
		return
	}
	body := make([]byte, 0, 64+len(ns))
	body = append(body, `{"data":{"namespace":"`...)
	body = append(body, ns...)
	body = append(body, `","value":`...)
	body = strconv.AppendInt(body, value, 10)
	body = append(body, "}}"...)
	reply(w, http.StatusOK, body)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis host:port")
	idle := flag.Int("pool", 256, "idle Redis connections kept (one per concurrent request)")
	flag.Parse()
	pool := &redis.Pool{
		MaxIdle:     *idle,
		IdleTimeout: 5 * time.Minute,
		Dial:        func() (redis.Conn, error) { return redis.Dial("tcp", *redisAddr) },
	}
	mux := http.NewServeMux()
	mux.Handle(prefix, &counters{pool})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, []byte(`{"status":"ok"}`))
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}
