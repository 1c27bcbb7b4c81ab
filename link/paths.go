package link

import (
	"sync"

	"github.com/uswitch-lab/uswitch/datapath"
)

// PathSampleInterval is how often, at most, a packet no TRACE rule
// marks is recorded for path listeners (nanoseconds): a live picture
// shows traffic without tracing all of it.
const PathSampleInterval = int64(200e6)

// SubscribePaths starts sending the path events (datapath.PathEvent)
// of each packet -j TRACE marks, and of one other packet every
// PathSampleInterval, to the returned channel: one slice per packet
// handed to the engine, the receiver's own. A slow reader misses
// packets (counted with the trace lines'). cancel stops it. While
// anyone listens the engine runs with a tracer (no flow cache).
func (d *Datapath) SubscribePaths(buffer int) (paths <-chan []datapath.PathEvent, cancel func()) {
	ch := make(chan []datapath.PathEvent, buffer)
	d.pmu.Lock()
	if d.psubs == nil {
		d.psubs = map[chan []datapath.PathEvent]struct{}{}
	}
	d.psubs[ch] = struct{}{}
	d.pathing.Add(1)
	d.pmu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			d.pmu.Lock()
			delete(d.psubs, ch)
			d.pathing.Add(-1)
			d.pmu.Unlock()
		})
	}
}

// samplePath reports whether the packet at now is the sample: the
// first one PathSampleInterval after the last.
func (d *Datapath) samplePath(now int64) bool {
	last := d.psample.Load()
	return now-last >= PathSampleInterval && d.psample.CompareAndSwap(last, now)
}

func (d *Datapath) publishPath(evs []datapath.PathEvent) {
	d.pmu.Lock()
	defer d.pmu.Unlock()
	for ch := range d.psubs {
		select {
		case ch <- append([]datapath.PathEvent(nil), evs...):
		default:
			d.tdropped.Add(1)
		}
	}
}
