module github.com/uswitch-lab/uswitch

go 1.26.8
