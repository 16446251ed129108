package etcd

import (
	"context"
	"maps"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/twillnet/twill/lease"
)

// Watch timing.
const (
	// watchDebounce is how long Watch collects changes after the first one
	// before it sends the new set: a burst of writes becomes one event.
	watchDebounce = 100 * time.Millisecond
	// maxListRetry bounds the backoff between failed lists.
	maxListRetry = 5 * time.Second
)

// Watch sends the full lease set now (as soon as etcd answers) and again
// after every change, changes within 100ms coalesced into one event. When
// the watch breaks (compaction past our revision, etcd lost its leader, the
// stream ended) it lists again and continues from there, sending the set if
// it differs. A reader that lags only misses intermediate sets: the channel
// always holds the newest one. A lease whose key or value does not decode
// is left out and reported in Event.Rejected. The channel is closed when ctx ends, never before.
func (s *Store) Watch(ctx context.Context) <-chan lease.Event {
	out := make(chan lease.Event, 1)
	go func() {
		defer close(out)
		w := watcher{s: s, out: out, bad: map[string]lease.Rejected{}}
		w.run(ctx)
	}()
	return out
}

// watcher is the state of one Watch.
type watcher struct {
	s    *Store
	out  chan lease.Event
	set  map[string]lease.Lease    // by key
	bad  map[string]lease.Rejected // by key: entries that do not decode
	sent bool
}

func (w *watcher) run(ctx context.Context) {
	retry := minRetry
	failing := false
	for ctx.Err() == nil {
		rev, err := w.list(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				w.s.log.Warn("lease watch: list failed; retrying until etcd answers", "err", err)
			}
			failing = true
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(retry*2, maxListRetry)
			continue
		}
		retry = minRetry
		if failing {
			w.s.log.Info("lease watch: listing works again")
			failing = false
		}
		w.publish()
		w.follow(ctx, rev)
	}
}

// list reads every lease and returns the store revision of the read.
func (w *watcher) list(ctx context.Context) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := w.s.c.Get(cctx, lease.SubnetsPrefix(w.s.prefix), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	set := make(map[string]lease.Lease, len(resp.Kvs))
	bad := map[string]lease.Rejected{}
	for _, kv := range resp.Kvs {
		add(set, bad, kv)
	}
	if w.sent && maps.EqualFunc(set, w.set, sameLease) && maps.Equal(bad, w.bad) {
		return resp.Header.Revision, nil // nothing new to say
	}
	w.set, w.bad, w.sent = set, bad, false
	return resp.Header.Revision, nil
}

// add decodes one key-value into set, or into bad when it does not decode.
func add(set map[string]lease.Lease, bad map[string]lease.Rejected, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	l, err := lease.Decode(key, kv.Value)
	if err != nil {
		delete(set, key)
		bad[key] = lease.Rejected{Key: key, Reason: lease.ReasonMalformed, Detail: err.Error()}
		return
	}
	delete(bad, key)
	l.Created = kv.CreateRevision
	set[key] = l
}

// follow applies watch events from rev+1 on until the watch breaks or ctx
// ends, publishing at most once per watchDebounce.
func (w *watcher) follow(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := w.s.c.Watch(wctx, lease.SubnetsPrefix(w.s.prefix), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	var flush <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush:
			flush = nil
			w.publish()
		case resp, ok := <-ch:
			if !ok {
				w.s.log.Warn("lease watch: the watch ended; listing again")
				w.publish()
				return
			}
			if err := resp.Err(); err != nil {
				w.s.log.Warn("lease watch: broken; listing again", "err", err, "compacted_at", resp.CompactRevision)
				w.publish()
				return
			}
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				if ev.Type == clientv3.EventTypeDelete {
					_, ok := w.set[key]
					_, isBad := w.bad[key]
					if ok || isBad {
						delete(w.set, key)
						delete(w.bad, key)
						w.sent = false
					}
					continue
				}
				add(w.set, w.bad, ev.Kv)
				w.sent = false
			}
			if !w.sent && flush == nil {
				flush = time.After(watchDebounce)
			}
		}
	}
}

// publish sends the current set unless it was sent already. The channel
// holds one event: an unread older set is replaced by the new one.
func (w *watcher) publish() {
	if w.sent {
		return
	}
	ev := lease.Event{Leases: slices.SortedFunc(maps.Values(w.set), lease.BySubnet)}
	if ev.Leases == nil {
		ev.Leases = []lease.Lease{}
	}
	for _, k := range slices.Sorted(maps.Keys(w.bad)) {
		ev.Rejected = append(ev.Rejected, w.bad[k])
	}
	select {
	case <-w.out: // drop the stale, unread set
	default:
	}
	w.out <- ev // we are the only sender and just made room
	w.sent = true
}

// sameLease reports whether two leases carry the same data.
func sameLease(a, b lease.Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet && a.Created == b.Created && string(a.Encode()) == string(b.Encode())
}
