package fault

// ActiveAt reports whether the fault's schedule (and no pause) lets it
// act at t ns after the set's epoch: the experiment runner draws the
// fault windows of its report from it, whatever the schedule's form.
func (f *Fault) ActiveAt(t int64) bool { return f.active(f.epoch + t) }
