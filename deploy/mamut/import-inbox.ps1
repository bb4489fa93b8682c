<#
.SYNOPSIS
  Imports the files starmamut writes into the Mamut import inbox (mamut.write_mode: import, transport: folder).

.DESCRIPTION
  Run by Task Scheduler on the Mamut server every minute, as the Windows user Mamut's client runs under.
  For each queued *.xml in the inbox (by name, so a shop's customer files come before its orders): move it
  to processing\ (from then on it is never started again by this script), run
    "Mamut ImportExport.exe" <mode> <company> <file> <CompareKey> <UserID> .F.
  and move it to done\ (exit code 0) or failed\ (anything else), with <file>.log holding the program's output.
  The mode comes from the file name starmamut gives it: *_order_* = IO, *_articles_* = IP, *_customer_* = IC.
  Temporary files (.<name>.tmp) are never picked up: starmamut renames a file into place when it is complete.
  Whether Mamut really holds an order is checked by starmamut over SQL; a file in failed\ shows up in its
  quarantine with the log. Delete a failed file (after fixing the cause) to have starmamut issue it again.

.EXAMPLE
  powershell.exe -NoProfile -ExecutionPolicy Bypass -File C:\Starmamut\import-inbox.ps1 -Inbox D:\Starmamut\inbox -Company 001
#>
param(
    [Parameter(Mandatory = $true)][string]$Inbox,
    [string]$Company = "001",
    [int]$CompareKey = 1,
    [int]$UserId = 1,
    [string]$Program = "C:\Program Files (x86)\Mamut\Mamut ImportExport.exe"
)
$ErrorActionPreference = "Stop"

# One run at a time: a second scheduled start while the first still imports leaves at once.
$mutex = New-Object System.Threading.Mutex($false, "Global\StarmamutImportInbox")
if (-not $mutex.WaitOne(0)) { exit 0 }
try {
    foreach ($folder in "processing", "done", "failed") {
        New-Item -ItemType Directory -Force -Path (Join-Path $Inbox $folder) | Out-Null
    }
    $files = Get-ChildItem -Path $Inbox -Filter "*.xml" -File | Where-Object { -not $_.Name.StartsWith(".") } | Sort-Object Name
    foreach ($file in $files) {
        switch -Wildcard ($file.Name) {
            "*_order_*" { $mode = "IO" }
            "*_articles_*" { $mode = "IP" }
            "*_customer_*" { $mode = "IC" }
            default { continue }
        }
        $taken = Join-Path (Join-Path $Inbox "processing") $file.Name
        Move-Item -LiteralPath $file.FullName -Destination $taken
        $output = & $Program $mode $Company $taken $CompareKey $UserId ".F." 2>&1 | Out-String
        $code = $LASTEXITCODE
        $target = if ($code -eq 0) { "done" } else { "failed" }
        $log = Join-Path (Join-Path $Inbox $target) ($file.Name + ".log")
        Set-Content -LiteralPath $log -Value ("exit code $code`r`n" + $output) -Encoding UTF8
        Move-Item -LiteralPath $taken -Destination (Join-Path (Join-Path $Inbox $target) $file.Name) -Force
    }
}
finally {
    $mutex.ReleaseMutex()
}
