module hearth.test/gohttp

go 1.19
