package experiment

import (
	"math"

	"github.com/uswitch-lab/uswitch/fault"
	"github.com/uswitch-lab/uswitch/lab"
)

// The Mathis et al. (1997) model ("The macroscopic behavior of the TCP
// congestion avoidance algorithm", CCR 27(3)): a TCP flow in congestion
// avoidance that loses packets at random with probability p reaches
//
//	goodput = MSS/RTT * C/sqrt(p),  C = sqrt(3/2) ~ 1.22
//
// (periodic losses, delayed ACKs off; C is 0.87 with delayed ACKs
// acknowledging every second segment). model = "mathis" sets each
// random-loss fault's window's goodput of the model workload against it.

// ModelResult is the model's part of the summary.
type ModelResult struct {
	Name     string       `json:"name"`
	Workload string       `json:"workload"`
	MSS      int          `json:"mss"`
	RTTms    float64      `json:"rtt_ms"`
	C        float64      `json:"c"`
	Points   []ModelPoint `json:"points"`
}

// ModelPoint is one loss fault's window.
type ModelPoint struct {
	Fault string `json:"fault"`
	// P is the fault's loss probability; PSeen the fraction of the
	// packets it matched that it dropped.
	P           float64 `json:"p"`
	PSeen       float64 `json:"p_seen"`
	MeasuredBps float64 `json:"measured_bps"`
	ModelBps    float64 `json:"model_bps"`
	// Ratio is measured / model.
	Ratio float64 `json:"ratio"`
}

// MathisC is the model's constant sqrt(3/2).
var MathisC = math.Sqrt(1.5)

// MathisBps is the model's goodput in bits per second.
func MathisBps(mss int, rttSeconds, p float64) float64 {
	return float64(mss) * 8 / rttSeconds * MathisC / math.Sqrt(p)
}

func mathis(c *lab.Config, set *fault.Set, s *Summary) *ModelResult {
	e := c.Experiment
	rtt, _ := lab.ParseTime(e.RTT)
	m := &ModelResult{Name: "mathis", Workload: e.ModelWorkload, MSS: e.MSS, RTTms: float64(rtt) / 1e6, C: round3(MathisC)}
	var wr *WorkloadResult
	for i := range s.Workloads {
		if s.Workloads[i].Name == e.ModelWorkload {
			wr = &s.Workloads[i]
		}
	}
	if wr == nil {
		return m
	}
	for _, f := range set.Faults {
		if f.Kind != fault.KindNetem || f.Netem.Model != fault.LossRandom || f.Netem.Loss == 0 {
			continue
		}
		pt := ModelPoint{Fault: f.Name, P: round6(f.Netem.Loss.Float())}
		if n := f.Matched.Load(); n > 0 {
			pt.PSeen = round6(float64(f.Dropped.Load()) / float64(n))
		}
		for _, w := range wr.Windows {
			if w.Fault == f.Name {
				pt.MeasuredBps = w.GoodputBps
				break
			}
		}
		pt.ModelBps = math.Round(MathisBps(e.MSS, rtt.Seconds(), pt.P))
		if pt.ModelBps > 0 {
			pt.Ratio = round3(pt.MeasuredBps / pt.ModelBps)
		}
		m.Points = append(m.Points, pt)
	}
	return m
}
