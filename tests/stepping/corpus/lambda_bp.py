# commands: continue continue continue continue
inc = lambda v: v + 1  # @bp
x = 0  # @start
x = inc(x)
x = inc(x)
x = inc(x)
print(x)
