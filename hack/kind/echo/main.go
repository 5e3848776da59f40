// Command echo is the test backend and the in-cluster load client of `make kind-test`.
//
//	echo serve [-listen :8080]   answers every request with its pod name; shuts down as real
//	                             apps do: on SIGTERM it stops listening and finishes in-flight
//	                             requests (http.Server.Shutdown).
//	echo load -url U [-host H] [-concurrency N] [-fresh N] [-duration D] [-timeout T] [-control :9090]
//	                             steady, bounded load (by -duration and -max-requests); prints
//	                             one JSON summary line at the end. With -control it also serves
//	                             GET /progress and POST /stop (ends the run early and answers
//	                             with the summary), so a test can stop it after a disruption.
//
// Endpoints of serve: /healthz (200, or 503 after POST /ready/off, until POST /ready/on; the
// readiness probe and kubeferry's health check both read it), /slow?ms=N (answers after N ms,
// for in-flight drains), anything else: 200 with the pod name as the body.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: echo serve|load [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "load":
		load(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q (serve, load)\n", os.Args[1])
		os.Exit(2)
	}
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", ":8080", "address to listen on")
	_ = fs.Parse(args)
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	version := os.Getenv("VERSION")
	var ready atomic.Bool
	ready.Store(true)

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /ready/{state}", func(w http.ResponseWriter, r *http.Request) {
		ready.Store(r.PathValue("state") == "on")
		_, _ = fmt.Fprintf(w, "ready=%v", ready.Load())
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(min(ms, 30000)) * time.Millisecond)
		_, _ = io.WriteString(w, name)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Pod", name)
		if version != "" {
			w.Header().Set("X-Version", version)
		}
		_, _ = io.WriteString(w, name)
	})

	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		logf("SIGTERM: closing the listener, finishing in-flight requests")
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	logf("listening on %s as %s", *listen, name)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		logf("serve: %v", err)
		os.Exit(1)
	}
	logf("stopped")
}

// summary is what load prints: the kind tests parse it from the pod's log.
type summary struct {
	Requests     int64            `json:"requests"`
	Failures     int64            `json:"failures"`
	FailureKinds map[string]int64 `json:"failure_kinds"`
	Answers      map[string]int64 `json:"answers"`
	MaxSeconds   float64          `json:"max_seconds"`
	P99Seconds   float64          `json:"p99_seconds"`
	Seconds      float64          `json:"seconds"`
}

func load(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	url := fs.String("url", "", "URL to request (GET)")
	host := fs.String("host", "", "Host header (default: from the URL)")
	concurrency := fs.Int("concurrency", 8, "concurrent clients, each on its own keep-alive connection")
	duration := fs.Duration("duration", 30*time.Second, "how long to run (the bound in time)")
	maxRequests := fs.Int64("max-requests", 2_000_000, "stop after this many requests (the bound in count)")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	control := fs.String("control", "", "address for GET /progress and POST /stop (none: no control port)")
	fresh := fs.Int("fresh", 0, "how many of the clients open a new connection for every request (the rest keep theirs alive)")
	_ = fs.Parse(args)
	if *url == "" {
		fmt.Fprintln(os.Stderr, "load: -url is required")
		os.Exit(2)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: *concurrency, IdleConnTimeout: 90 * time.Second}
	client := &http.Client{Transport: transport, Timeout: *timeout}

	var (
		mu        sync.Mutex
		sum       = summary{FailureKinds: map[string]int64{}, Answers: map[string]int64{}}
		latencies []float64
		count     atomic.Int64
		stopping  atomic.Bool
	)
	record := func(answer, failure string, seconds float64) {
		mu.Lock()
		defer mu.Unlock()
		sum.Requests++
		latencies = append(latencies, seconds)
		sum.MaxSeconds = max(sum.MaxSeconds, seconds)
		if failure != "" {
			sum.Failures++
			sum.FailureKinds[failure]++
			if sum.Failures <= 20 {
				logf("failure: %s after %.3fs", failure, seconds)
			}
			return
		}
		sum.Answers[answer]++
	}
	started := time.Now()
	deadline := started.Add(*duration)
	logf("load started: %d clients for %s against %s", *concurrency, *duration, *url)
	var wg sync.WaitGroup
	for worker := range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && count.Add(1) <= *maxRequests {
				if stopping.Load() {
					return
				}
				req, _ := http.NewRequest(http.MethodGet, *url, nil)
				if *host != "" {
					req.Host = *host
				}
				// A client that does not reuse connections meets every routing change at
				// connect time: the case a pod that closed its listener too early fails.
				req.Close = worker < *fresh
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					record("", "error: "+err.Error(), time.Since(t0).Seconds())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				seconds := time.Since(t0).Seconds()
				switch {
				case err != nil:
					record("", "body: "+err.Error(), seconds)
				case resp.StatusCode != http.StatusOK:
					record("", fmt.Sprintf("status %d: %.80s", resp.StatusCode, body), seconds)
				default:
					record(string(body), "", seconds)
				}
			}
		}()
	}
	done := make(chan []byte)
	finish := sync.OnceValue(func() []byte {
		wg.Wait()
		sum.Seconds = time.Since(started).Seconds()
		sort.Float64s(latencies)
		if n := len(latencies); n > 0 {
			sum.P99Seconds = latencies[min(n-1, n*99/100)]
		}
		out, _ := json.Marshal(sum)
		return out
	})
	if *control != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /progress", func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			_, _ = fmt.Fprintf(w, `{"requests":%d,"failures":%d}`, sum.Requests, sum.Failures)
		})
		mux.HandleFunc("POST /stop", func(w http.ResponseWriter, _ *http.Request) {
			stopping.Store(true)
			_, _ = w.Write(finish())
		})
		go func() { _ = http.ListenAndServe(*control, mux) }()
	}
	go func() { done <- finish() }()
	out := <-done
	fmt.Println("SUMMARY " + string(out))
	if *control != "" {
		// Stay up a moment so that a POST /stop racing the end of -duration gets its answer.
		time.Sleep(2 * time.Second)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s echo: %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}
